#!/usr/bin/python3
"""Loads a climseg PyTorch export into an independent PyTorch definition of the same network and runs it.

    /usr/bin/python3 tests/torch/models/run_exported.py DIR

DIR holds call.json ({model, width, norm, train}), weights.safetensors (climseg's export_pytorch) and x.npy (NHWC
input). load_state_dict(strict=True) must accept the file as is; the forward runs in float64 (train: batch
statistics, as climseg's training forward; else eval: running statistics) and y.npy (NHWC logits) is written.
"""
import json
import os
import sys

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.dirname(here))
import safetensors_min  # noqa: E402
import deepcam  # noqa: E402
import deeplabv3plus  # noqa: E402


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "call.json")) as f:
        call = json.load(f)
    if call["model"] == "deeplabv3plus":
        model = deeplabv3plus.DeepLabV3Plus2018(width=call["width"], norm=call["norm"])
    elif call["model"] == "deepcam":
        model = deepcam.DeepCAM(width=call["width"])
    else:
        raise SystemExit(f"no PyTorch definition for {call['model']}")
    state, meta = safetensors_min.load(os.path.join(d, "weights.safetensors"))
    model.load_state_dict(state, strict=True)  # every name and shape must match, nothing missing or extra
    model = model.double()
    model.train(call["train"])
    x = torch.from_numpy(np.load(os.path.join(d, "x.npy"))).permute(0, 3, 1, 2).double()
    with torch.no_grad():
        y = model(x)
    np.save(os.path.join(d, "y.npy"), y.permute(0, 2, 3, 1).contiguous().numpy())
    print(f"loaded {len(state)} tensors (format {meta.get('format')}), logits {tuple(y.shape)}")


if __name__ == "__main__":
    main()
