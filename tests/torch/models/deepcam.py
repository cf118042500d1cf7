"""DeepCAM's DeepLabv3+ (Xception, output stride 16) in PyTorch, written for climseg's tests from
reference-systems.md 2.3, with the module paths of the MLPerf HPC reference (`DeepLabv3_plus`: xception_features,
bottleneck, conv2/bn2, upsample; batch norms inside a wrapper module `bn`; nn.Sequential indices), so that a state_dict
exported by climseg loads here, and into the reference, with load_state_dict(strict=True). A width multiplier
scales the channel counts for small test versions; the pooled ASPP branch is expanded to the map size rather than
tiled to a fixed 48x72.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def ch(c, width):
    return max(1, int(round(c * width)))


class GBN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(x)


class SepConv(nn.Module):
    def __init__(self, cin, cout, stride=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, stride, dilation, dilation, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    def __init__(self, cin, cout, reps, stride=1, dilation=1, end_relu=True, grow_first=True, is_last=False):
        super().__init__()
        self.end_relu = end_relu
        self.skip = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if (cout != cin or stride != 1) else None
        if self.skip is not None:
            self.skipbn = GBN(cout)
        layers = []
        for i in range(reps):
            c_out = cout if (grow_first or i == reps - 1) else cin
            c_in = cin if i == 0 else (cout if grow_first else cin)
            layers += [SepConv(c_in, c_out, 1, dilation), GBN(c_out), nn.ReLU()]
        layers = layers[:-1]
        if stride != 1 or is_last:
            layers.append(SepConv(cout, cout, stride))
        self.rep = nn.Sequential(*layers)

    def forward(self, inp):
        x = self.rep(inp)
        x = x + (self.skipbn(self.skip(inp)) if self.skip is not None else inp)
        return F.relu(x) if self.end_relu else x


class Xception(nn.Module):
    def __init__(self, cin, w):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, ch(32, w), 3, 2, 1, bias=False)
        self.bn1 = GBN(ch(32, w))
        self.conv2 = nn.Conv2d(ch(32, w), ch(64, w), 3, 1, 1, bias=False)
        self.bn2 = GBN(ch(64, w))
        self.block1 = Block(ch(64, w), ch(128, w), 2, 2, end_relu=False)
        self.block2 = Block(ch(128, w), ch(256, w), 2, 2)
        self.block3 = Block(ch(256, w), ch(728, w), 2, 2, is_last=True)
        for i in range(4, 20):
            setattr(self, f"block{i}", Block(ch(728, w), ch(728, w), 3, 1))
        self.block20 = Block(ch(728, w), ch(1024, w), 2, 1, end_relu=False, grow_first=False, is_last=True)
        self.conv3 = SepConv(ch(1024, w), ch(1536, w), 1, 2)
        self.bn3 = GBN(ch(1536, w))
        self.conv4 = SepConv(ch(1536, w), ch(1536, w), 1, 2)
        self.bn4 = GBN(ch(1536, w))
        self.conv5 = SepConv(ch(1536, w), ch(2048, w), 1, 2)
        self.bn5 = GBN(ch(2048, w))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.block1(x))  # the reference's in-place ReLU also changes the low-level features
        low = x
        for i in range(2, 21):
            x = getattr(self, f"block{i}")(x)
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.relu(self.bn4(self.conv4(x)))
        x = F.relu(self.bn5(self.conv5(x)))
        return x, low


class Aspp(nn.Module):
    def __init__(self, cin, cout, rate):
        super().__init__()
        k, p = (1, 0) if rate == 1 else (3, rate)
        self.atrous_convolution = nn.Conv2d(cin, cout, k, 1, p, rate, bias=False)
        self.bn = GBN(cout)

    def forward(self, x):
        return F.relu(self.bn(self.atrous_convolution(x)))


class TrainableAffine(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weights = nn.Parameter(torch.ones(c, 1, 1))
        self.bias = nn.Parameter(torch.zeros(c, 1, 1))

    def forward(self, x):
        return self.weights * x + self.bias


class GlobalAveragePool(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.global_average_pool = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(cin, cout, 1, bias=False),
                                                 TrainableAffine(cout), nn.ReLU())

    def forward(self, x):
        return self.global_average_pool(x)


class Bottleneck(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        for i, r in enumerate([1, 6, 12, 18]):
            setattr(self, f"aspp{i + 1}", Aspp(cin, cout, r))
        self.global_avg_pool = GlobalAveragePool(cin, cout)
        self.conv = nn.Conv2d(5 * cout, cout, 1, bias=False)
        self.bn = GBN(cout)

    def forward(self, x):
        b = [getattr(self, f"aspp{i + 1}")(x) for i in range(4)]
        b.append(self.global_avg_pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return F.relu(self.bn(self.conv(torch.cat(b, 1))))


def deconv(cin, cout):
    return nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1, bias=False)


class Upsampler(nn.Module):
    def __init__(self, d, low, classes):
        super().__init__()
        self.deconv1 = nn.Sequential(deconv(d, d), GBN(d), nn.ReLU(), deconv(d, d), GBN(d), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2d(d + low, d, 3, 1, 1, bias=False), GBN(d), nn.ReLU(),
                                   nn.Conv2d(d, d, 3, 1, 1, bias=False), GBN(d), nn.ReLU(), nn.Conv2d(d, d, 1))
        self.deconv2 = nn.Sequential(deconv(d, d), GBN(d), nn.ReLU())
        self.last_deconv = nn.Sequential(deconv(d, classes))

    def forward(self, x, low):
        x = torch.cat((self.deconv1(x), low), 1)
        return self.last_deconv(self.deconv2(self.conv1(x)))


class DeepCAM(nn.Module):
    def __init__(self, in_channels=16, classes=3, width=1.0):
        super().__init__()
        d = ch(256, width)
        self.xception_features = Xception(in_channels, width)
        self.bottleneck = Bottleneck(ch(2048, width), d)
        self.conv2 = nn.Conv2d(ch(128, width), ch(48, width), 1, bias=False)
        self.bn2 = GBN(ch(48, width))
        self.upsample = Upsampler(d, ch(48, width), classes)

    def forward(self, x):
        x, low = self.xception_features(x)
        x = self.bottleneck(x)
        low = F.relu(self.bn2(self.conv2(low)))
        return self.upsample(x, low)
