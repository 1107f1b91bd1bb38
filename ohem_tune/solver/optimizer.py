"""SGD with Fast R-CNN's parameter groups: biases get LR x2 and no weight decay."""

from __future__ import annotations

import torch
import torch.nn as nn

from ohem_tune.config.solver import SolverConfig

_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, cfg: SolverConfig) -> list[dict]:
    """Three groups of trainable parameters: weights, biases (LR x bias_lr_factor, bias
    weight decay) and normalisation scales (base LR, no weight decay, as detectron2)."""
    weights, biases, norms = [], [], []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "bias":
                biases.append(p)
            elif isinstance(module, _NORM_TYPES):
                norms.append(p)
            else:
                weights.append(p)
    groups = [
        {"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "lr_factor": 1.0},
        {
            "params": biases,
            "lr": cfg.lr * cfg.bias_lr_factor,
            "weight_decay": cfg.bias_weight_decay,
            "lr_factor": cfg.bias_lr_factor,
        },
        {"params": norms, "lr": cfg.lr, "weight_decay": 0.0, "lr_factor": 1.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: SolverConfig) -> torch.optim.SGD:
    """SGD (momentum, Caffe-style weight decay in the gradient) over `param_groups`."""
    return torch.optim.SGD(param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum)
