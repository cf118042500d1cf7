#!/usr/bin/python3
"""PyTorch baseline for `climseg-bench model`: full training steps of one network (forward, loss, backward, Adam
step) timed in PyTorch, one CSV line on stdout (everything else on stderr), so scripts/gpu-check can put the two
side by side.

    /usr/bin/python3 bench/torch_model.py --model tiramisu --device cuda --dtype fp16 [--batch 2 --height 768 ...]

The networks are the independent definitions in tests/torch/models/ (found relative to this file), with the same
layers, parameter counts and convolution FLOPs as climseg's. The step, as in bench/model_bench.cpp:
- inputs uniform [0, 1) (N, 16, H, W) and labels with about the reference class mix (2% class 2, 0.1% class 1, the
  rest 0), made once; model and inputs channels_last; model in training mode (dropout, batch statistics);
- forward under torch.autocast(float16 | bfloat16) for fp16 / bf16 (fp32: no autocast), then the model's
  reference loss on the logits cast to fp32 (layers/softmax_xent.h: deeplabv3plus GB 2018 weights, sum, x0.1;
  tiramisu GB 2018 weights, sum by nonzero weights, x0.1; deepcam DeepCAM weights, mean over all pixels);
- backward (fp16: through a GradScaler whose first scale is climseg's SoftmaxXentConfig::initial_loss_scale,
  2^16, lowered for the 'sum' reduction), Adam step (--optimizer none: no step, as climseg-bench model, which
  times forward, loss and backward only), zero_grad(set_to_none=True) at the start of each step;
- --warmup untimed steps (with a GradScaler continued until two steps in a row were applied, at most 20 more, as
  climseg-bench model --train), then --steps timed ones; on CUDA with events (forward+loss, backward+optimizer), the
  device synchronised at the end of every step; on the CPU with time.perf_counter. Medians (the upper one, sorted[n / 2], as
  model_bench.cpp) are reported; step_ms is the median of whole steps (not the sum of the two medians).

CSV: climseg-bench model's columns plus `skipped`: the timed steps whose update was skipped for non-finite
gradients (fp16: the GradScaler lowered its scale; with --optimizer none: a gradient was non-finite; fp32 and bf16
never skip: 0). arena_gib is nan (PyTorch has no planned arena); device_peak_gib is
torch.cuda.max_memory_allocated() / 2^30 (weights, gradients, Adam state and activations), nan on the CPU.
On the CPU PyTorch gets OMP_NUM_THREADS threads, else all cores, as bench/torch_ops.py; in bf16 its oneDNN
convolutions are off unless --cpu-onednn (a heap corruption in torch 1.13's bf16 channels_last backward of 1x1
stride-2 convolutions with few channels, as tiramisu's transitions down at small widths). fp16 on the CPU needs a
torch whose CPU autocast takes float16 and a CPU GradScaler; otherwise the script says so and exits with 2.
"""
import argparse
import math
import os
import sys
import time
import warnings

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(here), "tests", "torch", "models"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import deepcam  # noqa: E402
import deeplabv3plus  # noqa: E402
import tiramisu  # noqa: E402

# climseg-bench model --infer's columns (bench/model_bench.h kInferHeader).
INFER_HEADER = ("model,framework,device,dtype,batch,height,width,width_mult,threads,fwd_ms,fwd_min_ms,samples_per_s,"
                "steps,folded_maps,gflop_per_step,gflops")
HEADER = ("model,device,dtype,batch,height,width,width_mult,fwd_ms,bwd_ms,step_ms,samples_per_s,arena_gib,"
          "device_peak_gib,steps,skipped")

# layers/softmax_xent.cpp: GB 2018 weights 1/f' normalised to sum 1, f' = (0.991, 0.0266, 0.13); DeepCAM f^(-1/8).
_GB_FPRIME = (0.991, 0.0266, 0.13)
GB2018_WEIGHTS = [(1 / f) / sum(1 / g for g in _GB_FPRIME) for f in _GB_FPRIME]
DEEPCAM_WEIGHTS = [f ** -0.125 for f in (0.986267818, 0.000457871, 0.013274311)]
# model -> (class weights, reduction, scale), climseg's reference_loss(m).
REFERENCE_LOSS = {
    "deeplabv3plus": (GB2018_WEIGHTS, "sum", 0.1),
    "tiramisu": (GB2018_WEIGHTS, "sum_by_nonzero_weights", 0.1),
    "deepcam": (DEEPCAM_WEIGHTS, "mean", 1.0),
}


def median(v):
    """The upper median, as bench/model_bench.cpp (sorted[n / 2])."""
    return sorted(v)[len(v) // 2]


def fail(msg):
    print(f"torch_model.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(description="A whole network's training step timed in PyTorch (the baseline of "
                                "climseg-bench model); CSV on stdout")
    p.add_argument("--model", choices=["deeplabv3plus", "tiramisu", "deepcam"], default="deeplabv3plus")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp16")
    p.add_argument("--batch", type=int, default=2, help="samples per step (default 2)")
    p.add_argument("--height", type=int, default=768, help="input height (default 768)")
    p.add_argument("--width", type=int, default=1152, help="input width (default 1152)")
    p.add_argument("--width-multiplier", type=float, default=1.0, help="channel width multiplier (default 1)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--steps", type=int, default=10, help="timed steps, median reported (default 10)")
    p.add_argument("--optimizer", choices=["adam", "none"], default="adam",
                   help="adam (default) or none: forward, loss and backward only, as climseg-bench model")
    p.add_argument("--blocks", type=int, nargs="+", help="tiramisu dense block sizes (default 2 2 2 4 5)")
    p.add_argument("--growth", type=int, help="tiramisu growth rate (default 32)")
    p.add_argument("--kernel", type=int, help="tiramisu kernel size, odd (default 5)")
    p.add_argument("--dropout", type=float, help="tiramisu dropout probability (default 0.2)")
    p.add_argument("--cpu-onednn", action="store_true",
                   help="CPU bf16: keep PyTorch's oneDNN (mkldnn) convolutions on (off by default: Debian's torch "
                   "1.13 corrupts the heap in the bf16 channels_last backward of 1x1 stride-2 convolutions with few "
                   "channels, e.g. tiramisu at width 0.0625, 64x96)")
    p.add_argument("--infer", action="store_true",
                   help="inference as climseg-bench model --infer: model.eval(), torch.no_grad(), channels_last, "
                   "forward only (no loss), fp32; its CSV columns")
    p.add_argument("--no-header", action="store_true", help="omit the CSV header")
    a = p.parse_args(argv)
    if a.batch <= 0 or a.height <= 0 or a.width <= 0:
        p.error("--batch, --height and --width must be positive")
    if not (a.width_multiplier > 0 and math.isfinite(a.width_multiplier)):
        p.error("--width-multiplier must be positive")
    if a.warmup < 0 or a.steps <= 0:
        p.error("--steps must be positive and --warmup non-negative")
    tiramisu_opts = {k: getattr(a, k) for k in ("blocks", "growth", "kernel", "dropout") if getattr(a, k) is not None}
    if tiramisu_opts and a.model != "tiramisu":
        p.error(f"--{'/--'.join(tiramisu_opts)}: only for --model tiramisu")
    if a.blocks is not None and (len(a.blocks) < 2 or min(a.blocks) <= 0):
        p.error("--blocks needs at least two positive sizes (down path, then bottleneck)")
    if a.growth is not None and a.growth <= 0:
        p.error("--growth must be positive")
    if a.kernel is not None and (a.kernel <= 0 or a.kernel % 2 == 0):
        p.error("--kernel must be positive and odd")
    if a.dropout is not None and not 0 <= a.dropout < 1:
        p.error("--dropout must be in [0, 1)")
    q = {"deeplabv3plus": 8, "deepcam": 16}.get(a.model) or 2 ** (len(a.blocks or [2, 2, 2, 4, 5]) - 1)
    for name, v in (("height", a.height), ("width", a.width)):
        if v % q:
            lo, hi = max(q, v // q * q), -(-v // q) * q
            p.error(f"model {a.model}: {name} {v} is not divisible by {q} (try {lo} or {hi})")
    if a.infer and a.dtype != "fp32":
        p.error("--infer: fp32 only (the CPU inference comparison)")
    if a.model == "deeplabv3plus" and a.batch == 1 and not a.infer:
        p.error("deeplabv3plus with --batch 1: PyTorch's BatchNorm2d cannot train the image-level ASPP branch "
                "(one value per channel); use --batch 2 or more")
    a.tiramisu_opts = tiramisu_opts
    return a


def build_model(a):
    w = a.width_multiplier
    if a.model == "deeplabv3plus":
        return deeplabv3plus.DeepLabV3Plus2018(in_channels=16, classes=3, width=w, norm="batchnorm")
    if a.model == "deepcam":
        return deepcam.DeepCAM(in_channels=16, classes=3, width=w)
    return tiramisu.Tiramisu(in_channels=16, classes=3, width=w, **a.tiramisu_opts)


def reference_loss(model_name, device):
    weights, reduction, scale = REFERENCE_LOSS[model_name]
    w = torch.tensor(weights, dtype=torch.float32, device=device)

    def loss_fn(logits, labels):
        nll = F.cross_entropy(logits.float(), labels, weight=w, reduction="sum")  # sum of w[l] * nll
        if reduction == "mean":
            nll = nll / labels.numel()
        elif reduction == "sum_by_nonzero_weights":
            nll = nll / (w[labels] != 0).sum().clamp(min=1)
        return nll * scale

    return loss_fn


def initial_loss_scale(model_name, pixels):
    """climseg's SoftmaxXentConfig::initial_loss_scale: 2^16, divided by 2^ceil(log2(pixels)) for 'sum'."""
    if REFERENCE_LOSS[model_name][1] != "sum":
        return 65536.0
    return max(1.0, 65536.0 / 2.0 ** math.ceil(math.log2(pixels)))


def make_grad_scaler(device, init_scale):
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        try:
            return torch.amp.GradScaler(device, init_scale=init_scale)
        except (TypeError, RuntimeError, ValueError, AssertionError) as e:
            if device != "cuda":
                fail(f"this torch ({torch.__version__}) has no GradScaler for '{device}': {e}")
    if device != "cuda":
        fail(f"fp16 on the CPU: this torch ({torch.__version__}) has no CPU GradScaler (torch.amp.GradScaler)")
    return torch.cuda.amp.GradScaler(init_scale=init_scale)


def check_cpu_fp16():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an old torch warns "Disabling autocast" before it raises
            with torch.autocast("cpu", dtype=torch.float16):
                ok = torch.is_autocast_cpu_enabled() and torch.get_autocast_cpu_dtype() == torch.float16
    except RuntimeError as e:
        fail(f"--dtype fp16 on the CPU: this torch ({torch.__version__}) has no float16 CPU autocast ({e}); "
             "use --dtype fp32 or bf16 on the CPU")
    if not ok:
        fail(f"--dtype fp16 on the CPU: this torch ({torch.__version__}) does not enable float16 CPU autocast; "
             "use --dtype fp32 or bf16 on the CPU")


def run_infer(a, dev, cuda):
    """--infer: eval mode (running statistics, no dropout), no autograd, channels_last, forward passes of one fixed
    input; --warmup untimed, then --steps timed (the upper median and the minimum reported)."""
    model = build_model(a).to(dev, memory_format=torch.channels_last)
    model.eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(a.batch, 16, a.height, a.width, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
    print(f"torch {torch.__version__}, {a.model} inference, {a.device}"
          + (f" ({torch.cuda.get_device_name()})" if cuda else f", {torch.get_num_threads()} threads")
          + ", fp32, eval, no_grad, channels_last", file=sys.stderr)
    times = []
    with torch.no_grad():
        for s in range(a.warmup + a.steps):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            y = model(x)
            if cuda:
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            del y
            if s >= a.warmup:
                times.append(1e3 * (t1 - t0))
    f = median(times)
    if not a.no_header:
        print(INFER_HEADER)
    print(f"{a.model},torch,{a.device},fp32,{a.batch},{a.height},{a.width},{a.width_multiplier:g},"
          f"{torch.get_num_threads()},{f:.3f},{min(times):.3f},{1000.0 * a.batch / f:.4f},{a.steps},nan,nan,nan")
    sys.stdout.flush()
    return 0


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        fail("--device cuda but PyTorch sees no CUDA device (torch "
             f"{torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu")
    if not cuda:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count()))
        if a.dtype == "fp16":
            check_cpu_fp16()
        if a.dtype == "bf16" and not a.cpu_onednn:
            torch.backends.mkldnn.enabled = False
            print("CPU bf16: oneDNN convolutions off (see --cpu-onednn)", file=sys.stderr)
    dev = torch.device(a.device)
    amp_dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    if cuda and a.dtype == "bf16" and not torch.cuda.is_bf16_supported():
        fail(f"--dtype bf16: {torch.cuda.get_device_name()} has no bf16 support")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(1)

    if a.infer:
        return run_infer(a, dev, cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = build_model(a).to(dev, memory_format=torch.channels_last)
    model.train()
    nparams = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4) if a.optimizer == "adam" else None
    scaler = make_grad_scaler(a.device, initial_loss_scale(a.model, a.batch * a.height * a.width)) \
        if a.dtype == "fp16" else None
    loss_fn = reference_loss(a.model, dev)

    # Inputs: normalised fields uniform [0, 1) and labels with about the reference class mix, made once.
    g = torch.Generator().manual_seed(2)
    x = torch.rand(a.batch, 16, a.height, a.width, generator=g)
    u = torch.rand(a.batch, a.height, a.width, generator=g)
    labels = torch.zeros(a.batch, a.height, a.width, dtype=torch.int64)
    labels[u < 0.021] = 1
    labels[u < 0.02] = 2
    x = x.to(dev).contiguous(memory_format=torch.channels_last)
    labels = labels.to(dev)
    print(f"torch {torch.__version__}, {a.model} {nparams:,} parameters, {a.device}"
          + (f" ({torch.cuda.get_device_name()})" if cuda else f", {torch.get_num_threads()} threads")
          + f", {a.dtype}, optimizer {a.optimizer}, loss {REFERENCE_LOSS[a.model][1]} x{REFERENCE_LOSS[a.model][2]}"
          + (f", initial loss scale {scaler.get_scale():g}" if scaler else ""), file=sys.stderr)

    def grads_finite():
        return all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)

    fwd, bwd, step = [], [], []
    skipped = warmup_skipped = 0
    last_scale = scaler.get_scale() if scaler else None
    if cuda:
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        torch.cuda.synchronize()
    # Warm-up as climseg-bench model --train: --warmup steps, then, with a GradScaler, until two steps in a row were
    # applied (at most 20 more): the scale's first overflows are start-up, not steady state.
    warmup = a.warmup
    clean_run = 0
    s = -1
    while s + 1 < warmup + a.steps:
        s += 1
        if cuda:
            ev[0].record()
        else:
            t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        if amp_dtype is not None:
            with torch.autocast(a.device, dtype=amp_dtype):
                logits = model(x)
        else:
            logits = model(x)
        loss = loss_fn(logits, labels)
        if cuda:
            ev[1].record()
        else:
            t1 = time.perf_counter()
        if scaler is not None:
            scaler.scale(loss).backward()
            if opt is not None:
                scaler.step(opt)
                scaler.update()
        else:
            loss.backward()
            if opt is not None:
                opt.step()
        if cuda:
            ev[2].record()
            torch.cuda.synchronize()
            f, b = ev[0].elapsed_time(ev[1]), ev[1].elapsed_time(ev[2])
            st = ev[0].elapsed_time(ev[2])
        else:
            t2 = time.perf_counter()
            f, b, st = 1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t2 - t0)
        # Skipped-step accounting, outside the timed region.
        skip = False
        if scaler is not None:
            if opt is not None:
                sc = scaler.get_scale()
                skip, last_scale = sc < last_scale, sc
            else:
                skip = not grads_finite()
        if not math.isfinite(loss.item()):
            print(f"step {s}: loss is {loss.item()}", file=sys.stderr)
        clean_run = 0 if skip else clean_run + 1
        if s < warmup:
            warmup_skipped += skip
            if s == warmup - 1 and scaler is not None and opt is not None and clean_run < 2 and warmup < a.warmup + 20:
                warmup += 1
            continue
        skipped += skip
        fwd.append(f)
        bwd.append(b)
        step.append(st)
    if warmup_skipped:
        print(f"{warmup_skipped} of {warmup} warmup steps skipped (non-finite gradients)", file=sys.stderr)
    if scaler is not None and opt is not None:
        print(f"final loss scale {scaler.get_scale():g}", file=sys.stderr)

    med_step = median(step)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
    if not a.no_header:
        print(HEADER)
    print(f"{a.model},{a.device},{a.dtype},{a.batch},{a.height},{a.width},{a.width_multiplier:g},"
          f"{median(fwd):.3f},{median(bwd):.3f},{med_step:.3f},"
          f"{1000.0 * a.batch / med_step:.3f},nan,{peak:.3f},{a.steps},{skipped}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if "out of memory" not in str(e):
            raise
        print(f"torch_model.py: error: out of device memory: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(1)
