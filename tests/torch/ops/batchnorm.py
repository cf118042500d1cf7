"""BatchNorm2d: F.batch_norm (training: batch statistics, running stats updated in place with momentum and the
unbiased variance; inference: running statistics), then the optional residual add and ReLU.
attrs: training, momentum, eps, relu, residual. state: running_mean, running_var ((1,1,1,C) as climseg binds them).
Returns y and the running statistics after the call."""
import torch
import torch.nn.functional as F


def run(x, p, attrs, state):
    gamma = p[0].reshape(-1)  # (1,1,1,C) -> (C,)
    beta = p[1].reshape(-1)
    rm = state["running_mean"].reshape(-1).clone()
    rv = state["running_var"].reshape(-1).clone()
    y = F.batch_norm(x[0], rm, rv, gamma, beta, training=bool(attrs["training"]), momentum=attrs["momentum"],
                     eps=attrs["eps"])
    if attrs.get("residual", False):
        y = y + x[1]
    if attrs.get("relu", False):
        y = torch.relu(y)
    return y, {"running_mean": rm, "running_var": rv}
