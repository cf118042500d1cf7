#!/usr/bin/python3
"""PyTorch side of tests/torch/test_torch_optimizer.cpp: torch.optim optimizers and lr_scheduler schedules in
float64, as the oracle for climseg's train/optimizer and train/schedule.

    optim_check.py JOB.json

JOB.json holds two lists:
  "optim":    {"kind": "sgd"|"adam"|"adamw", "sizes": [n0, n1, ...], "lr": [lr per step], "momentum", "nesterov",
               "weight_decay", "beta1", "beta2", "eps", "w0": W0.npy, "grads": G.npy, "out": PREFIX}
              W0 holds the tensors' initial values concatenated (sum(sizes) elements, any shape), G the gradients of
              every step (steps * sum(sizes) elements, step-major). Writes PREFIX_w.npy and the optimizer state
              concatenated the same way: PREFIX_momentum_buffer.npy (SGD with momentum), PREFIX_exp_avg.npy and
              PREFIX_exp_avg_sq.npy (Adam, AdamW); each 1-D float64.
  "schedule": {"kind": "multistep"|"cosine"|"poly", "base_lr", "milestones", "gamma", "t_max", "eta_min",
               "power", "steps": N, "out": OUT.npy}: the lr used by optimizer steps 0..N-1 (read from the param
              group before each scheduler.step()), 1-D float64.
"""
import json
import sys

import numpy as np
import torch


def run_optim(job):
    sizes = job["sizes"]
    total = sum(sizes)
    w0 = np.load(job["w0"]).reshape(-1)
    grads = np.load(job["grads"]).reshape(-1, total)
    assert w0.size == total and grads.shape[0] == len(job["lr"])
    params, start = [], 0
    for n in sizes:
        params.append(torch.nn.Parameter(torch.tensor(w0[start:start + n], dtype=torch.float64)))
        start += n
    kind = job["kind"]
    if kind == "sgd":
        opt = torch.optim.SGD(params, lr=job["lr"][0], momentum=job["momentum"], nesterov=job["nesterov"],
                              weight_decay=job["weight_decay"])
    elif kind == "adam":
        opt = torch.optim.Adam(params, lr=job["lr"][0], betas=(job["beta1"], job["beta2"]), eps=job["eps"],
                               weight_decay=job["weight_decay"])
    elif kind == "adamw":
        opt = torch.optim.AdamW(params, lr=job["lr"][0], betas=(job["beta1"], job["beta2"]), eps=job["eps"],
                                weight_decay=job["weight_decay"])
    else:
        raise ValueError("unknown optimizer " + kind)
    for step, lr in enumerate(job["lr"]):
        for group in opt.param_groups:
            group["lr"] = lr
        start = 0
        for p, n in zip(params, sizes):
            p.grad = torch.tensor(grads[step, start:start + n], dtype=torch.float64)
            start += n
        opt.step()

    def flat(tensors):
        return np.concatenate([t.detach().numpy().reshape(-1) for t in tensors]).astype(np.float64)

    np.save(job["out"] + "_w.npy", flat(params))
    keys = {"sgd": ["momentum_buffer"], "adam": ["exp_avg", "exp_avg_sq"], "adamw": ["exp_avg", "exp_avg_sq"]}[kind]
    if kind == "sgd" and job["momentum"] == 0:
        keys = []
    for key in keys:
        np.save(job["out"] + "_" + key + ".npy", flat([opt.state[p][key] for p in params]))


def run_schedule(job):
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=job["base_lr"])
    kind = job["kind"]
    sched = torch.optim.lr_scheduler
    if kind == "multistep":
        s = sched.MultiStepLR(opt, milestones=job["milestones"], gamma=job["gamma"])
    elif kind == "cosine":
        s = sched.CosineAnnealingLR(opt, T_max=job["t_max"], eta_min=job["eta_min"])
    elif kind == "poly":
        s = sched.PolynomialLR(opt, total_iters=job["t_max"], power=job["power"])
    else:
        raise ValueError("unknown schedule " + kind)
    lrs = []
    for _ in range(job["steps"]):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    np.save(job["out"], np.array(lrs, dtype=np.float64))


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    for job in jobs.get("optim", []):
        run_optim(job)
    for job in jobs.get("schedule", []):
        run_schedule(job)


if __name__ == "__main__":
    main()
