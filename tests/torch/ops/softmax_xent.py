"""PyTorch oracle for climseg's SoftmaxXent (layers/softmax_xent.h), called by tests/torch/oracle.py.

x[0]: logits (N, K, H, W) float64 with requires_grad; x[1]: labels (N, 1, H, W) int64.
attrs: reduction ("sum", "mean", "weighted_mean", "sum_by_nonzero_weights"), weights (list, may be empty),
       ignore_index (-1: none), scale.
Returns the scalar loss and, as state, the argmax (N, 1, H, W) and the per-sample counts (N, 3K, 1, 1) in the
order TP[K], FP[K], FN[K] (the layer's saved layout), computed with torch.argmax and a numpy confusion count.
"""
import numpy as np
import torch
import torch.nn.functional as F


def run(x, p, attrs, state):
    logits, labels4 = x[0], x[1]
    n, k, h, w = logits.shape
    labels = labels4[:, 0].long()
    weights = attrs.get("weights") or []
    weight = torch.tensor(weights, dtype=torch.float64) if weights else None
    ignore = int(attrs.get("ignore_index", -1))
    torch_ignore = ignore if ignore >= 0 else -100
    red = attrs["reduction"]
    scale = float(attrs.get("scale", 1.0))

    if red == "sum":
        loss = F.cross_entropy(logits, labels, weight=weight, ignore_index=torch_ignore, reduction="sum")
    elif red == "weighted_mean":
        loss = F.cross_entropy(logits, labels, weight=weight, ignore_index=torch_ignore, reduction="mean")
    elif red == "mean":
        # DeepCAM: CrossEntropyLoss(weight, reduction='none') then a plain mean over every pixel.
        loss = F.cross_entropy(logits, labels, weight=weight, ignore_index=torch_ignore, reduction="none").mean()
    elif red == "sum_by_nonzero_weights":
        # TF's Reduction.SUM_BY_NONZERO_WEIGHTS with per-pixel weights w[label] (0 for ignored pixels).
        per = F.cross_entropy(logits, labels, weight=weight, ignore_index=torch_ignore, reduction="none")
        wl = weight[labels.clamp(0, k - 1)] if weight is not None else torch.ones_like(per)
        valid = labels != torch_ignore
        count = ((wl != 0) & valid).sum()
        loss = per.sum() / count
    else:
        raise ValueError("unknown reduction " + red)
    loss = loss * scale

    pred = torch.argmax(logits.detach(), dim=1)  # (N, H, W)
    pn = pred.numpy().reshape(n, -1)
    ln = labels.numpy().reshape(n, -1)
    counts = np.zeros((n, 3 * k), dtype=np.int64)
    for i in range(n):
        ok = ln[i] != torch_ignore
        pr, lb = pn[i][ok], ln[i][ok]
        for c in range(k):
            counts[i, c] = np.sum((pr == c) & (lb == c))
            counts[i, k + c] = np.sum((pr == c) & (lb != c))
            counts[i, 2 * k + c] = np.sum((pr != c) & (lb == c))
    state_out = {
        "argmax": pred.unsqueeze(1).to(torch.float64),
        "counts": torch.from_numpy(counts.astype(np.float64)).reshape(n, 3 * k, 1, 1),
    }
    return loss, state_out
