"""Train section: iteration budget, periods, seed, device, CUDA backend settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ohem_tune.config.base import Section


class TrainConfig(Section):
    """Iteration-based schedule, logging/eval/checkpoint periods, seed, device and threads."""

    max_iter: int = Field(40000, ge=1)
    log_period: int = Field(20, ge=1)
    eval_period: int = Field(0, ge=0, description="evaluate every E iterations (0: only at end)")
    eval_split: Literal["test", "val"] = Field(
        "test",
        description="the split periodic evaluations use (what schedulers and searchers see); "
        "val: eval/val/* keys from dataset.val_split, and the final evaluation adds test",
    )
    checkpoint_period: int = Field(5000, ge=0, description="0: only at the end")
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1, description="torch threads (None: CPUs given)")
    deterministic: bool = Field(
        False,
        description="CUDA only: true turns cuDNN autotuning off and deterministic algorithms on "
        "(slower); false (default) autotunes convolutions and pads training images to a "
        "multiple of 32. CPU runs are deterministic either way",
    )
    matmul_precision: Literal["highest", "high", "medium"] = Field(
        "high",
        description="CUDA only: torch.set_float32_matmul_precision; high/medium allow TF32 "
        "matmuls and convolutions on Ampere and newer, highest keeps full fp32",
    )
    final_eval: bool = Field(True, description="evaluate on the test split when training ends")
    keep_checkpoints: int = Field(2, ge=0, description="newest checkpoint files kept (0: all)")
