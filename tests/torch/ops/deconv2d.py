"""climseg ConvTranspose2d in PyTorch: weights (C_in, R, S, K/groups) = permute(0, 2, 3, 1) of PyTorch's
(C_in, K/groups, kh, kw); optional bias (1, 1, 1, K).

attrs: kernel_h/w, stride_h/w, dilation_h/w, groups, padding ("explicit" with pad_h/w and output_padding_h/w:
PyTorch's nn.ConvTranspose2d as is, or "same" for TensorFlow's conv2d_transpose 'SAME').

TF 'SAME' (output exactly in * stride): run the transposed conv with padding 0, whose full output has
    full = (in - 1) * stride + dilation * (k - 1) + 1
rows, then crop it the TF way. TF pads the forward conv that maps the output (in * stride) back to the input with
    total = max((in - 1) * stride + dilation * (k - 1) + 1 - in * stride, 0) = max(full - in * stride, 0)
rows, top = total // 2, so the output is full[top : top + in * stride]: the crop removes total // 2 rows at the
top and the rest at the bottom (k3 s2: 0 at the top, 1 at the bottom). When k < stride, full < in * stride and
the missing rows at the bottom are zeros (TF's total is 0). The bias is added after cropping, so padded rows hold
the bias as in TF.
"""
import torch.nn.functional as F


def same_crop(y, dim, out):
    full = y.shape[dim]
    top = max(full - out, 0) // 2
    if full < out:  # k < stride: zeros at the end
        pad = [0, 0, 0, 0]
        pad[1 if dim == 3 else 3] = out - full
        y = F.pad(y, pad)
    return y.narrow(dim, top, out)


def run(x, p, attrs, state):
    a = attrs
    w = p[0].permute(0, 3, 1, 2)  # (C_in, R, S, K/g) -> (C_in, K/g, R, S)
    b = p[1].reshape(-1) if len(p) > 1 else None
    stride = (a["stride_h"], a["stride_w"])
    dil = (a["dilation_h"], a["dilation_w"])
    if a["padding"] == "same":
        y = F.conv_transpose2d(x[0], w, None, stride, 0, 0, a["groups"], dil)
        y = same_crop(y, 2, x[0].shape[2] * a["stride_h"])
        y = same_crop(y, 3, x[0].shape[3] * a["stride_w"])
        return y + b.view(1, -1, 1, 1) if b is not None else y
    return F.conv_transpose2d(x[0], w, b, stride, (a["pad_h"], a["pad_w"]),
                              (a["output_padding_h"], a["output_padding_w"]), a["groups"], dil)
