"""The 2018 Gordon Bell Tiramisu (FC-DenseNet variant; blocks 2,2,2,4,5, growth 32, 5x5, dropout 0.2) in PyTorch,
written from climseg's builder (models/tiramisu.cpp) and reference-systems.md 2.2, with module paths equal to
climseg's node names (docs/models.md: `stem.conv`, `down{i}.layer{j}.conv|norm`, `down{i}.td.conv|norm`,
`up{i}.tu`, `up{i}.layer{j}.conv|norm`, `head`). Same layers, channel counts, kernels, padding, transitions, dropout
placement and norm setting as climseg's, so the parameter count (7,504,835 at the defaults) and the convolution
FLOPs are equal; it is the network of the PyTorch training-step baseline (bench/torch_model.py).

- Dense layer (post-activation, unlike the original Tiramisu): conv k x k 'same' -> growth channels (bias), (norm),
  ReLU, dropout. A dense block of n layers concatenates each layer's maps onto its input: [x | b1 | ... | bn].
- Transition down: conv 1x1 stride 2 with the same channel count (bias), (norm), ReLU, dropout (no pooling).
- Transition up: TF conv2d_transpose 3x3 stride 2 'SAME' (bias, no activation) of the previous block's new maps
  only; then concat [transition up, skip] and a dense block of the skip's level.
- Stem conv k x k 16 -> 64 (bias), ReLU, dropout (no norm); head conv 1x1 -> classes (bias).
- norm: "none" (the production setting, the model's default), "batchnorm" (tf.layers' momentum 0.99 = PyTorch 0.01,
  eps 1e-3) or "half" (x0.5), as climseg's --norm. Convolutions keep their bias in every mode.
- A width multiplier scales the stem channels and the growth rate (max(1, round(c * width))) as climseg does.
- Input NCHW (the memory format is the caller's: channels_last works); H and W divisible by 2^(len(blocks) - 1).
- Init: He-uniform weights (sqrt(6 / fan_in) bounds, the reference's) and zero biases.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def ch(c, width):
    return max(1, int(round(c * width)))


def make_norm(c, mode):
    if mode == "batchnorm":
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)
    if mode in ("none", "half"):
        return None
    raise ValueError(f"tiramisu: unknown norm '{mode}' (batchnorm, half, none)")


class ConvNormReLU(nn.Module):
    """conv (bias), then the model's norm, ReLU and dropout: a dense layer, or with a 1x1 stride-2 conv the
    transition down."""

    def __init__(self, cin, cout, kernel, stride, norm, dropout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, bias=True)
        bn = make_norm(cout, norm)
        if bn is not None:
            self.norm = bn
        self.halve = norm == "half"
        self.p = dropout

    def forward(self, x):
        y = self.conv(x)
        if hasattr(self, "norm"):
            y = self.norm(y)
        elif self.halve:
            y = 0.5 * y
        y = F.relu(y)
        return F.dropout(y, self.p, self.training) if self.p > 0 else y


class DeconvSame(nn.ConvTranspose2d):
    """TF conv2d_transpose 3x3 stride 2 'SAME' (bias): output exactly 2x. TF pads the forward view (0, 1), so this
    is a padding-0 transposed convolution (2 * in + 1) cropped by the last row and column."""

    def __init__(self, cin, cout):
        super().__init__(cin, cout, 3, stride=2, padding=0, bias=True)

    def forward(self, x):
        h, w = 2 * x.shape[2], 2 * x.shape[3]
        return super().forward(x)[:, :, :h, :w]


class DenseBlock(nn.Module):
    """layer1..layerN; forward returns ([x | new maps], number of new channels)."""

    def __init__(self, cin, layers, growth, kernel, norm, dropout):
        super().__init__()
        self.n = layers
        for j in range(layers):
            setattr(self, f"layer{j + 1}", ConvNormReLU(cin + j * growth, growth, kernel, 1, norm, dropout))
        self.out_channels = cin + layers * growth
        self.new_channels = layers * growth

    def forward(self, x):
        for j in range(self.n):
            x = torch.cat([x, getattr(self, f"layer{j + 1}")(x)], 1)
        return x


class Stem(nn.Module):
    def __init__(self, cin, cout, kernel, dropout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2, bias=True)
        self.p = dropout

    def forward(self, x):
        y = F.relu(self.conv(x))
        return F.dropout(y, self.p, self.training) if self.p > 0 else y


class Tiramisu(nn.Module):
    def __init__(self, in_channels=16, classes=3, width=1.0, blocks=(2, 2, 2, 4, 5), growth=32, kernel=5,
                 dropout=0.2, stem_channels=64, norm="none"):
        super().__init__()
        blocks = [int(n) for n in blocks]
        if len(blocks) < 2:
            raise ValueError(f"tiramisu: needs at least two dense blocks (down path and bottleneck), got {blocks}")
        if any(n <= 0 for n in blocks):
            raise ValueError(f"tiramisu: dense block sizes must be positive, got {blocks}")
        if growth <= 0 or kernel <= 0 or kernel % 2 == 0:
            raise ValueError(f"tiramisu: growth {growth} and kernel {kernel} must be positive, the kernel odd")
        make_norm(1, norm)  # validates the name
        self.blocks = blocks
        g = ch(growth, width)
        self.stem = Stem(in_channels, ch(stem_channels, width), kernel, dropout)
        c = ch(stem_channels, width)
        skip_channels = []
        nb = len(blocks)
        for i in range(nb):  # down path; the last block is the bottleneck (its TD is pruned in the reference)
            blk = DenseBlock(c, blocks[i], g, kernel, norm, dropout)
            c = blk.out_channels
            if i + 1 < nb:
                skip_channels.append(c)
                blk.td = ConvNormReLU(c, c, 1, 2, norm, dropout)
            setattr(self, f"down{i + 1}", blk)
        new = blocks[-1] * g
        for i in range(nb - 1):  # up path over the down blocks in reverse
            level = nb - 2 - i
            tu = DeconvSame(new, new)
            blk = DenseBlock(new + skip_channels[level], blocks[level], g, kernel, norm, dropout)
            blk.tu = tu
            setattr(self, f"up{i + 1}", blk)
            new, c = blk.new_channels, blk.out_channels
        self.head = nn.Conv2d(c, classes, 1, bias=True)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")  # TF he_uniform for Conv2d
                nn.init.zeros_(m.bias)

    def input_multiple(self):
        return 2 ** (len(self.blocks) - 1)

    def forward(self, x):
        q = self.input_multiple()
        if x.shape[2] % q or x.shape[3] % q:
            raise ValueError(f"tiramisu: input {x.shape[2]}x{x.shape[3]} is not divisible by {q}")
        x = self.stem(x)
        nb = len(self.blocks)
        skips = []
        for i in range(nb):
            blk = getattr(self, f"down{i + 1}")
            x = blk(x)
            if i + 1 < nb:
                skips.append(x)
                x = blk.td(x)
        for i in range(nb - 1):
            prev = getattr(self, f"down{nb}") if i == 0 else getattr(self, f"up{i}")
            fresh = x[:, x.shape[1] - prev.new_channels:]  # the previous block's new maps (a channel view)
            blk = getattr(self, f"up{i + 1}")
            x = blk(torch.cat([blk.tu(fresh), skips[nb - 2 - i]], 1))
        return self.head(x)
