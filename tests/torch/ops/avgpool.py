"""climseg AvgPool2d (layers/pool.h) in PyTorch.

attrs: kh, kw, sh, sw, ph, pw, count_include_pad (explicit padding: nn.AvgPool2d semantics), or same=True (TF
'SAME' padding, see maxpool.py). For SAME the window sums are taken over a zero-padded input and divided either by
kh*kw (count_include_pad) or by the number of image elements in the window (TF), counted by pooling a padded mask
of ones: an independent formula, not a call of the same PyTorch option.
"""
import math

import torch
import torch.nn.functional as F


def same_pads(size, k, s):
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def run(x, p, attrs, state):
    k = (attrs["kh"], attrs["kw"])
    s = (attrs["sh"], attrs["sw"])
    cip = attrs["count_include_pad"]
    if attrs.get("same", False):
        t, b = same_pads(x[0].shape[2], k[0], s[0])
        l, r = same_pads(x[0].shape[3], k[1], s[1])
        xp = F.pad(x[0], (l, r, t, b))
        sums = F.avg_pool2d(xp, k, s) * (k[0] * k[1])
        if cip:
            return sums / (k[0] * k[1])
        ones = F.pad(torch.ones_like(x[0][:, :1]), (l, r, t, b))
        count = torch.round(F.avg_pool2d(ones, k, s) * (k[0] * k[1]))
        return sums / count
    return F.avg_pool2d(x[0], k, s, (attrs["ph"], attrs["pw"]), count_include_pad=cip)
