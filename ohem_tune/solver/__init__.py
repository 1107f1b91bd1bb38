"""Solver: SGD parameter groups (bias LR x2, no bias decay) and the step LR schedule."""

from ohem_tune.solver.lr_scheduler import WarmupMultiStepLR, build_lr_scheduler, lr_multiplier
from ohem_tune.solver.optimizer import build_optimizer, param_groups

__all__ = [
    "WarmupMultiStepLR",
    "build_lr_scheduler",
    "build_optimizer",
    "lr_multiplier",
    "param_groups",
]
