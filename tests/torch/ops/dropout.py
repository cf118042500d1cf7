"""Dropout. PyTorch's RNG differs from climseg's Philox stream, so masks cannot match bit for bit. Two modes:
- attrs.mode == "mask": inverted dropout with climseg's mask given as state["mask"] (NHWC 0/1):
  y = x * mask / (1 - p), the semantics (scale, gradient through the same mask) checked against torch's formula;
- attrs.mode == "torch": torch's own F.dropout(x, p, training=True) (seeded by the driver), for its keep statistics.
"""
import torch.nn.functional as F


def run(x, p, attrs, state):
    if attrs["mode"] == "mask":
        mask = state["mask"].permute(0, 3, 1, 2)
        return x[0] * mask / (1.0 - attrs["p"])
    return F.dropout(x[0], p=attrs["p"], training=True)
