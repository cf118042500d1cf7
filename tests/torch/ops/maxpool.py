"""climseg MaxPool2d (layers/pool.h) in PyTorch.

attrs: kh, kw, sh, sw, ph, pw (explicit padding, nn.MaxPool2d semantics) or same=True (TF 'SAME': out = ceil(in/s),
pad_total = max((out-1)*s + k - in, 0), top/left = total // 2, the rest bottom/right, padded positions ignored:
written here as a -inf pad followed by an unpadded max pool).
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
    if attrs.get("same", False):
        t, b = same_pads(x[0].shape[2], k[0], s[0])
        l, r = same_pads(x[0].shape[3], k[1], s[1])
        xp = F.pad(x[0], (l, r, t, b), value=-math.inf)
        return F.max_pool2d(xp, k, s)
    return F.max_pool2d(x[0], k, s, (attrs["ph"], attrs["pw"]))
