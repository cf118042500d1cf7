"""The 2018 Gordon Bell DeepLabv3+ (ResNet-50 v2, output stride 8, ASPP 12/24/36, deconv1x decoder) in PyTorch,
written independently of climseg's C++ builder from reference-systems.md 2.1, with module paths equal to climseg's
node names so that `climseg` weights exported with export_pytorch load with load_state_dict(strict=True).

TF semantics reproduced: slim conv2d_same = symmetric padding rate * (k - 1) / 2; the root max pool 3x3/2 'SAME'
pads at the bottom/right only (with -inf); the ResNet v2 strided identity shortcut is subsampling; the decoder's
conv2d_transpose 3x3/2 'SAME' is a padding-0 transposed convolution cropped by one row/column at the bottom/right.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def ch(c, width):
    return max(1, int(round(c * width)))


def tf_same_pads(size, k, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


class BNReLU(nn.BatchNorm2d):
    """slim batch norm (decay 0.9997, eps 1e-3) with the ReLU of the arg scope; a BatchNorm2d itself, so its
    parameters sit at the node's path (climseg's fused BN+ReLU node)."""

    def __init__(self, c, relu=True):
        super().__init__(c, eps=1e-3, momentum=0.0003)
        self.relu = relu

    def forward(self, x):
        y = super().forward(x)
        return F.relu(y) if self.relu else y


class Half(nn.Module):
    """The 2018 code without --use_batchnorm: batch norm monkey-patched into 'multiply by 0.5'."""

    def __init__(self, scale, relu=True):
        super().__init__()
        self.scale, self.relu = scale, relu

    def forward(self, x):
        y = self.scale * x
        return F.relu(y) if self.relu else y


def Norm(c, mode, relu=True):
    if mode == "batchnorm":
        return BNReLU(c, relu)
    return Half(0.5 if mode == "half" else 1.0, relu)


class DeconvSame(nn.Module):
    """TF conv2d_transpose 3x3 stride 2 'SAME' (output exactly 2x)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cin, cout, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        h, w = x.shape[2] * 2, x.shape[3] * 2
        y = F.conv_transpose2d(x, self.weight, None, 2, 0)  # full size 2 * in + 1
        top, left = (y.shape[2] - h) // 2, (y.shape[3] - w) // 2
        return y[:, :, top:top + h, left:left + w] + self.bias.view(1, -1, 1, 1)


class Unit(nn.Module):
    def __init__(self, din, depth, bdepth, stride, rate, norm):
        super().__init__()
        self.stride = stride
        self.preact = Norm(din, norm)
        self.has_proj = depth != din
        if self.has_proj:
            self.shortcut = nn.Conv2d(din, depth, 1, stride=stride, bias=True)
        self.conv1 = nn.Conv2d(din, bdepth, 1, bias=False)
        self.bn1 = Norm(bdepth, norm)
        self.conv2 = nn.Conv2d(bdepth, bdepth, 3, stride=stride, padding=rate, dilation=rate, bias=False)
        self.bn2 = Norm(bdepth, norm)
        self.conv3 = nn.Conv2d(bdepth, depth, 1, bias=True)

    def forward(self, x):
        pre = self.preact(x)
        if self.has_proj:
            sc = self.shortcut(pre)
        else:
            sc = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        r = self.bn1(self.conv1(pre))
        self.low_level = r
        r = self.bn2(self.conv2(r))
        return sc + self.conv3(r)


class Backbone(nn.Module):
    def __init__(self, cin, width, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, ch(64, width), 7, stride=2, padding=3, bias=True)
        din = ch(64, width)
        current, rate = 1, 1
        for bi, (base, units, stride) in enumerate([(64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)]):
            block = nn.Module()
            bd = ch(base, width)
            for u in range(units):
                us = stride if u == units - 1 else 1
                if current == 2:  # output stride 8 reached: dilate instead of striding
                    unit = Unit(din, 4 * bd, bd, 1, rate, norm)
                    rate *= us
                else:
                    unit = Unit(din, 4 * bd, bd, us, 1, norm)
                    current *= us
                setattr(block, f"unit{u + 1}", unit)
                din = 4 * bd
            setattr(self, f"block{bi + 1}", block)

    def forward(self, x):
        x = self.conv1(x)
        top, bottom = tf_same_pads(x.shape[2], 3, 2)
        left, right = tf_same_pads(x.shape[3], 3, 2)
        x = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), 3, 2)
        low = None
        for bi, units in enumerate([3, 4, 6, 3]):
            block = getattr(self, f"block{bi + 1}")
            for u in range(units):
                unit = getattr(block, f"unit{u + 1}")
                x = unit(x)
                if bi == 0 and u == 2:
                    low = unit.low_level
        return x, low


class Aspp(nn.Module):
    def __init__(self, cin, depth, norm):
        super().__init__()
        self.conv1x1 = nn.Conv2d(cin, depth, 1, bias=False)
        self.bn1x1 = Norm(depth, norm)
        for i, r in enumerate([12, 24, 36]):
            setattr(self, f"conv3x3_{i + 1}", nn.Conv2d(cin, depth, 3, padding=r, dilation=r, bias=False))
            setattr(self, f"bn3x3_{i + 1}", Norm(depth, norm))
        self.image_conv = nn.Conv2d(cin, depth, 1, bias=False)
        self.image_bn = Norm(depth, norm)
        self.project = nn.Conv2d(5 * depth, depth, 1, bias=False)
        self.project_bn = Norm(depth, norm)

    def forward(self, x):
        b = [self.bn1x1(self.conv1x1(x))]
        for i in range(3):
            b.append(getattr(self, f"bn3x3_{i + 1}")(getattr(self, f"conv3x3_{i + 1}")(x)))
        img = self.image_bn(self.image_conv(x.mean(dim=(2, 3), keepdim=True)))
        b.append(img.expand(-1, -1, x.shape[2], x.shape[3]))  # bilinear resize of a 1x1 map: a constant
        return self.project_bn(self.project(torch.cat(b, 1)))


class Decoder(nn.Module):
    def __init__(self, cin, width, depth, classes, norm):
        super().__init__()
        self.low_conv = nn.Conv2d(ch(64, width), ch(48, width), 1, bias=False)  # block1/unit3's conv1 output
        self.low_bn = Norm(ch(48, width), norm)
        self.up1 = DeconvSame(depth, depth)
        self.conv1 = nn.Conv2d(depth + ch(48, width), depth, 3, padding=1, bias=False)
        self.bn1 = Norm(depth, norm)
        self.conv2 = nn.Conv2d(depth, depth, 3, padding=1, bias=False)
        self.bn2 = Norm(depth, norm)
        self.up2 = DeconvSame(depth, depth)
        self.up3 = DeconvSame(depth, depth)
        self.skip_conv1 = nn.Conv2d(cin, ch(64, width), 3, padding=1, bias=True)
        self.skip_conv2 = nn.Conv2d(ch(64, width), ch(128, width), 3, padding=1, bias=True)
        self.conv3 = nn.Conv2d(depth + ch(128, width), depth, 3, padding=1, bias=True)
        self.conv4 = nn.Conv2d(depth, depth, 3, padding=1, bias=True)
        self.logits = nn.Conv2d(depth, classes, 1, bias=True)

    def forward(self, inp, a, low):
        low = self.low_bn(self.low_conv(low))
        y = torch.cat([self.up1(a), low], 1)
        y = self.bn2(self.conv2(self.bn1(self.conv1(y))))
        y = self.up3(self.up2(y))
        s = self.skip_conv2(self.skip_conv1(inp))
        y = torch.cat([y, s], 1)
        return self.logits(self.conv4(self.conv3(y)))


class DeepLabV3Plus2018(nn.Module):
    def __init__(self, in_channels=16, classes=3, width=1.0, norm="batchnorm"):
        super().__init__()
        depth = ch(256, width)
        self.backbone = Backbone(in_channels, width, norm)
        self.aspp = Aspp(4 * ch(512, width), depth, norm)
        self.decoder = Decoder(in_channels, width, depth, classes, norm)

    def forward(self, x):
        enc, low = self.backbone(x)
        return self.decoder(x, self.aspp(enc), low)
