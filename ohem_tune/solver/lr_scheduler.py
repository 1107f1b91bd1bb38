"""Step learning-rate schedule with optional linear warm-up, evaluated in closed form."""

from __future__ import annotations

from bisect import bisect_right

import torch

from ohem_tune.config.solver import SolverConfig


def lr_multiplier(
    iteration: int, steps: list[int], gamma: float, warmup_iters: int, warmup_factor: float
) -> float:
    """Factor on the base LR at `iteration`: gamma^(steps passed), ramped linearly in warm-up."""
    factor = gamma ** bisect_right(steps, iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


class WarmupMultiStepLR(torch.optim.lr_scheduler.LRScheduler):
    """LR of group g at iteration i = base_lr_g * lr_multiplier(i); state is plain numbers."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps: list[int],
        gamma: float = 0.1,
        warmup_iters: int = 0,
        warmup_factor: float = 1.0 / 3,
        last_epoch: int = -1,
    ):
        self.steps = list(steps)
        self.gamma = gamma
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        m = lr_multiplier(
            self.last_epoch, self.steps, self.gamma, self.warmup_iters, self.warmup_factor
        )
        return [base * m for base in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: SolverConfig) -> WarmupMultiStepLR:
    """The schedule of cfg: steps, gamma, warm-up."""
    return WarmupMultiStepLR(optimizer, cfg.steps, cfg.gamma, cfg.warmup_iters, cfg.warmup_factor)
