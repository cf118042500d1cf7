"""climseg Conv2d in PyTorch: weights KRSC (K, R, S, C/groups), optional bias (1, 1, 1, K).

attrs: kernel_h/w, stride_h/w, dilation_h/w, groups, padding ("explicit" with pad_h/w, or "same" for TF 'SAME').
TF 'SAME' is F.pad with TensorFlow's pads followed by a VALID conv: per dimension out = ceil(in / stride),
total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0), top/left = total // 2, bottom/right = the rest.
"""
import torch.nn.functional as F


def tf_same_pads(size, k, stride, dil):
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dil + 1 - size, 0)
    return total // 2, total - total // 2


def run(x, p, attrs, state):
    a = attrs
    w = p[0].permute(0, 3, 1, 2)  # KRSC -> OIHW
    b = p[1].reshape(-1) if len(p) > 1 else None
    stride = (a["stride_h"], a["stride_w"])
    dil = (a["dilation_h"], a["dilation_w"])
    if a["padding"] == "same":
        top, bottom = tf_same_pads(x[0].shape[2], a["kernel_h"], a["stride_h"], a["dilation_h"])
        left, right = tf_same_pads(x[0].shape[3], a["kernel_w"], a["stride_w"], a["dilation_w"])
        return F.conv2d(F.pad(x[0], (left, right, top, bottom)), w, b, stride, 0, dil, a["groups"])
    return F.conv2d(x[0], w, b, stride, (a["pad_h"], a["pad_w"]), dil, a["groups"])
