"""climseg BilinearResize (layers/resize.h) in PyTorch.

attrs: out_h, out_w (or scale: F.interpolate's scale_factor), mode:
  "align_corners"  F.interpolate(mode="bilinear", align_corners=True)
  "half_pixel"     F.interpolate(mode="bilinear", align_corners=False)
  "tf_legacy"      TF1 tf.image.resize_bilinear(align_corners=False, half_pixel_centers=False), which PyTorch does
                   not have; written out here from TF's definition (resize_bilinear_op.cc, legacy scaler):
                   src = d * in / out, i0 = floor(src), i1 = min(i0 + 1, in - 1), lerp by src - i0, rows first.
"""
import torch
import torch.nn.functional as F


def legacy_axis(n_in, n_out):
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    i0 = torch.clamp(torch.floor(src), max=n_in - 1).long()
    i1 = torch.clamp(i0 + 1, max=n_in - 1)
    return i0, i1, src - i0.double()


def tf_legacy(x, oh, ow):
    h0, h1, lh = legacy_axis(x.shape[2], oh)
    w0, w1, lw = legacy_axis(x.shape[3], ow)
    lh = lh.view(1, 1, -1, 1)
    lw = lw.view(1, 1, 1, -1)
    top = x.index_select(2, h0)
    bottom = x.index_select(2, h1)

    def cols(t):
        left, right = t.index_select(3, w0), t.index_select(3, w1)
        return left + (right - left) * lw

    t, b = cols(top), cols(bottom)
    return t + (b - t) * lh


def run(x, p, attrs, state):
    mode = attrs["mode"]
    if "scale" in attrs:
        s = attrs["scale"]
        oh, ow = int(x[0].shape[2] * s), int(x[0].shape[3] * s)
    else:
        oh, ow = attrs["out_h"], attrs["out_w"]
    if mode == "tf_legacy":
        return tf_legacy(x[0], oh, ow)
    ac = mode == "align_corners"
    if "scale" in attrs:
        return F.interpolate(x[0], scale_factor=attrs["scale"], mode="bilinear", align_corners=ac)
    return F.interpolate(x[0], size=(oh, ow), mode="bilinear", align_corners=ac)
