#!/usr/bin/python3
"""PyTorch oracle for climseg's parity tests (tests/util/torch_oracle.h).

    /usr/bin/python3 tests/torch/oracle.py DIR

DIR holds call.json ({op, attrs, n_inputs, n_params, has_dy, state: [names]}), inputs x<i>.npy (NHWC; float or
integer), parameters p<i>.npy (climseg's layouts), the output gradient dy.npy (NHWC) and state s_<name>.npy. Inputs
become NCHW torch tensors (float64 with requires_grad, or int64 for class indices, still 4-D (N,1,H,W));
parameters stay in climseg's layouts (float64, requires_grad) and state tensors are passed as loaded. The op module
tests/torch/ops/<op>.py defines run(x, p, attrs, state) returning y (NCHW, or 0-d for a scalar) or (y, state_out).
Written back: y.npy, dx<i>.npy (NHWC, float inputs only), dp<i>.npy (climseg's layouts), so_<name>.npy, where
4-D tensors go NCHW -> NHWC, 1-D (C,) -> (1,1,1,C) and 0-d -> (1,1,1,1).
"""
import importlib.util
import json
import os
import sys

import numpy as np
import torch


def to_ours(t):
    t = t.detach()
    if t.dim() == 4:
        return t.permute(0, 2, 3, 1).contiguous().numpy()
    if t.dim() == 1:
        return t.reshape(1, 1, 1, -1).numpy()
    if t.dim() == 0:
        return t.reshape(1, 1, 1, 1).numpy()
    raise ValueError(f"cannot map a {t.dim()}-d tensor to NHWC")


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "call.json")) as f:
        call = json.load(f)
    torch.manual_seed(0)
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(call["op"], os.path.join(here, "ops", call["op"] + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    x = []
    for i in range(call["n_inputs"]):
        a = np.load(os.path.join(d, f"x{i}.npy"))
        t = torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
        x.append(t.double().requires_grad_(True) if a.dtype.kind == "f" else t.long())
    p = [torch.from_numpy(np.load(os.path.join(d, f"p{i}.npy"))).double().requires_grad_(True)
         for i in range(call["n_params"])]
    state = {n: torch.from_numpy(np.load(os.path.join(d, f"s_{n}.npy"))).double() for n in call["state"]}

    out = mod.run(x, p, call.get("attrs", {}), state)
    y, state_out = (out if isinstance(out, tuple) else (out, {}))
    np.save(os.path.join(d, "y.npy"), to_ours(y))
    for n, t in state_out.items():
        np.save(os.path.join(d, f"so_{n}.npy"), to_ours(torch.as_tensor(t)))

    if call["has_dy"]:
        dy = torch.from_numpy(np.load(os.path.join(d, "dy.npy")))
        if y.dim() == 4:
            dy = dy.permute(0, 3, 1, 2)
        else:
            dy = dy.reshape(y.shape)
        y.backward(dy.double())
        for i, t in enumerate(x):
            if t.dtype == torch.float64:
                g = t.grad if t.grad is not None else torch.zeros_like(t)
                np.save(os.path.join(d, f"dx{i}.npy"), to_ours(g))
        for i, t in enumerate(p):
            g = t.grad if t.grad is not None else torch.zeros_like(t)
            np.save(os.path.join(d, f"dp{i}.npy"), g.detach().numpy())
    with open(os.path.join(d, "done"), "w") as f:
        f.write("ok\n")


if __name__ == "__main__":
    main()
