#!/usr/bin/python3
"""PyTorch side of tests/torch/test_torch_weights.cpp: TinyNet, the twin of the net in tests/util/weights_net.h
(change both together), and two directions of weight exchange through safetensors files.

    weights_check.py load WEIGHTS X.npy Y.npy   load climseg's export_pytorch file with load_state_dict(strict=True),
                                                run the forward pass in eval mode on X, write Y
    weights_check.py save WEIGHTS X.npy Y.npy   random weights and statistics, written as a state_dict (for
                                                climseg's import_pytorch), and the forward pass in eval mode on X

X and Y are NHWC (climseg's layout) .npy files; the model runs in float32 on NCHW tensors.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_min  # noqa: E402


class Affine(nn.Module):
    """climseg's Affine layer (per-channel scale and shift) under PyTorch's parameter names."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class Enc(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)  # climseg's fused ReLU follows it in forward
        self.dw = nn.Conv2d(8, 8, (3, 1), padding=(1, 0), groups=4, bias=False)

    def forward(self, x):
        return self.dw(torch.relu(self.bn(self.conv(x))))


class Up(nn.Module):
    def __init__(self):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.affine = Affine(6)

    def forward(self, x):
        return self.affine(self.deconv(x))


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = Enc()
        self.up = Up()
        self.head = nn.Conv2d(6, 5, 1)

    def forward(self, x):
        return self.head(self.up(self.enc(x)))


def forward_nhwc(model, x_path, y_path):
    x = torch.from_numpy(np.load(x_path)).float().permute(0, 3, 1, 2).contiguous()
    model.eval()
    with torch.no_grad():
        y = model(x)
    np.save(y_path, y.permute(0, 2, 3, 1).contiguous().numpy())


def main():
    mode, weights, x_path, y_path = sys.argv[1:5]
    model = TinyNet()
    if mode == "load":
        state, metadata = safetensors_min.load(weights)
        assert metadata.get("format") == "pt", metadata
        model.load_state_dict(state, strict=True)  # raises on any missing, unexpected or misshapen tensor
    elif mode == "save":
        g = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.rand(p.shape, generator=g) - 0.5)
            for name, b in model.named_buffers():
                if name.endswith("running_mean"):
                    b.copy_(torch.rand(b.shape, generator=g) - 0.5)
                elif name.endswith("running_var"):
                    b.copy_(torch.rand(b.shape, generator=g) + 0.5)
                else:  # num_batches_tracked: any value; climseg ignores it
                    b.fill_(7)
        safetensors_min.save(weights, model.state_dict(), {"format": "pt"})
    else:
        raise SystemExit(f"unknown mode {mode}")
    forward_nhwc(model, x_path, y_path)


if __name__ == "__main__":
    main()
