"""The trainer's callback interface: Ray Tune and MLflow observe training through it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Hook:
    """Override what you need. Metric keys are the ones listed in ohem_tune.tracking_keys."""

    def on_train_start(self, trainer: Any) -> None:
        """Called once, after building (and resuming), before the first iteration."""

    def on_step(self, iteration: int, stats: dict[str, float]) -> None:
        """After every iteration (e.g. a progress bar): that iteration's host values (lr,
        sec/iter, phase times); its losses and sampler stats too on log iterations, when they
        are read from the device (train.log_period)."""

    def on_log(self, iteration: int, metrics: dict[str, float]) -> None:
        """Every train.log_period iterations: train/* metrics averaged over the period."""

    def on_eval(self, iteration: int, metrics: dict[str, float]) -> None:
        """After each evaluation (every train.eval_period and at the end): eval/* metrics."""

    def on_checkpoint(self, iteration: int, path: Path) -> None:
        """After a checkpoint file was written atomically."""

    def on_train_end(self, result: dict[str, Any]) -> None:
        """Once, with the final metrics (final/* keys), also when training raised."""
