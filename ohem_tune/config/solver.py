"""Solver section: SGD with Fast R-CNN's conventions, step schedule, accumulation, AMP."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ohem_tune.config.base import Section


class SolverConfig(Section):
    """SGD momentum 0.9, wd 5e-4 (none on biases, bias LR x2), step LR, warm-up, iter_size."""

    ims_per_batch: int = Field(2, ge=1, le=64, description="N: images per SGD minibatch")
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    bias_lr_factor: float = Field(2.0, gt=0.0)
    bias_weight_decay: float = Field(0.0, ge=0.0)
    steps: list[int] = Field(default_factory=lambda: [30000])
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    warmup_iters: int = Field(0, ge=0)
    warmup_factor: float = Field(1.0 / 3, gt=0.0, le=1.0)
    iter_size: int = Field(1, ge=1, description="gradient accumulation steps per update")
    amp: Literal["off", "fp16", "bf16"] = "off"
    clip_grad_norm: float | None = Field(None, gt=0.0)
