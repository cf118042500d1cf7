#!/usr/bin/python3
"""PyTorch CPU timings for `climseg-bench op --torch`: one line per input line, the median milliseconds of the
same op (float32, channels_last), or -1 where PyTorch has no equivalent. PyTorch gets as many threads as climseg's
OpenMP pool (OMP_NUM_THREADS, else all cores): Debian's torch otherwise starts with one.

    /usr/bin/python3 bench/torch_ops.py OPS.txt WARMUP REPS

OPS.txt lines: "<fwd|bwd> <op> n=.. h=.. w=.. c=.. k=.. r=.. s=.. stride=.. pad=.. dil=.. groups=.. [extra=..] ..."
"""
import os
import sys
import time

import torch
import torch.nn.functional as F


def parse(line):
    parts = line.split()
    direction, op = parts[0], parts[1]
    kv = dict(p.split("=", 1) for p in parts[2:])
    for key in ("n", "h", "w", "c", "k", "r", "s", "stride", "dil", "groups"):
        kv[key] = int(kv[key])
    return direction, op, kv


def tf_same_pads(size, k, stride, dil):
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dil + 1 - size, 0)
    return total // 2, total - total // 2


def build(op, d):
    """Returns (inputs requiring grad, forward function) or None."""
    x = torch.randn(d["n"], d["c"], d["h"], d["w"]).to(memory_format=torch.channels_last).requires_grad_(True)
    if op == "relu":
        return [x], lambda: torch.relu(x)
    if op == "add":
        y = torch.randn_like(x).requires_grad_(True)
        return [x, y], lambda: x + y
    if op == "conv2d":
        w = torch.randn(d["k"], d["c"] // d["groups"], d["r"], d["s"]).to(memory_format=torch.channels_last)
        w.requires_grad_(True)
        b = torch.randn(d["k"], requires_grad=True)
        if d["pad"] == "same":
            t, bo = tf_same_pads(d["h"], d["r"], d["stride"], d["dil"])
            l, ri = tf_same_pads(d["w"], d["s"], d["stride"], d["dil"])
            return [x, w, b], lambda: F.conv2d(F.pad(x, (l, ri, t, bo)), w, b, d["stride"], 0, d["dil"], d["groups"])
        p = int(d["pad"])
        return [x, w, b], lambda: F.conv2d(x, w, b, d["stride"], p, d["dil"], d["groups"])
    if op == "deconv2d":
        w = torch.randn(d["c"], d["k"] // d["groups"], d["r"], d["s"]).requires_grad_(True)
        b = torch.randn(d["k"], requires_grad=True)
        if d["pad"] == "same":  # TF SAME, exactly in * stride: PyTorch p=1 op=1 has the same cost
            return [x, w, b], lambda: F.conv_transpose2d(x, w, b, d["stride"], 1, 1, d["groups"], d["dil"])
        op_pad = int(d.get("extra") or 0)
        return [x, w, b], lambda: F.conv_transpose2d(x, w, b, d["stride"], int(d["pad"]), op_pad, d["groups"],
                                                     d["dil"])
    if op == "maxpool":
        if d["pad"] == "same":
            t, bo = tf_same_pads(d["h"], d["r"], d["stride"], 1)
            l, ri = tf_same_pads(d["w"], d["s"], d["stride"], 1)
            return [x], lambda: F.max_pool2d(F.pad(x, (l, ri, t, bo), value=float("-inf")), (d["r"], d["s"]),
                                             d["stride"])
        return [x], lambda: F.max_pool2d(x, (d["r"], d["s"]), d["stride"], int(d["pad"]))
    if op == "globalavgpool":
        return [x], lambda: F.adaptive_avg_pool2d(x, 1)
    if op == "batchnorm":
        g = torch.ones(d["c"], requires_grad=True)
        b = torch.zeros(d["c"], requires_grad=True)
        rm, rv = torch.zeros(d["c"]), torch.ones(d["c"])
        relu = d.get("extra") == "relu"
        return [x, g, b], lambda: (torch.relu if relu else (lambda t: t))(
            F.batch_norm(x, rm, rv, g, b, True, 0.1, 1e-5))
    if op == "resize":
        oh, ow = (int(v) for v in d["extra"].split("x"))
        return [x], lambda: F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False)
    if op == "dropout":
        p = float(d.get("extra") or 0.5)
        return [x], lambda: F.dropout(x, p, True)
    if op == "affine":
        g = torch.randn(1, d["c"], 1, 1, requires_grad=True)
        b = torch.randn(1, d["c"], 1, 1, requires_grad=True)
        return [x, g, b], lambda: x * g + b
    if op == "softmax_xent":
        t = torch.randint(0, d["c"], (d["n"], d["h"], d["w"]))
        return [x], lambda: F.cross_entropy(x, t)
    return None


def median_ms(f, warmup, reps):
    times = []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        f()
        t1 = time.perf_counter()
        if i >= warmup:
            times.append((t1 - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    path, warmup, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    for line in open(path):
        if not line.strip():
            continue
        direction, op, d = parse(line)
        built = build(op, d)
        if built is None:
            print(-1)
            continue
        inputs, fwd = built
        if direction == "fwd":
            with torch.no_grad():
                print(median_ms(fwd, warmup, reps))
        else:
            y = fwd()
            g = torch.randn_like(y)
            print(median_ms(lambda: torch.autograd.grad(y, inputs, g, retain_graph=True), warmup, reps))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
