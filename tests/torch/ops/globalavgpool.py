"""climseg GlobalAvgPool (layers/pool.h): PyTorch adaptive_avg_pool2d(x, 1)."""
import torch.nn.functional as F


def run(x, p, attrs, state):
    return F.adaptive_avg_pool2d(x[0], 1)
