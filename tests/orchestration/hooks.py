"""Trainer hooks used by the orchestration tests, loaded by trials through the spec's `hooks:`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ohem_tune.engine.hooks import Hook


class FailOnceForOhem(Hook):
    """Raises once, at iteration 12, in OHEM trials; records where each attempt started."""

    def on_train_start(self, trainer: Any) -> None:
        self.out_dir = Path(trainer.out_dir)
        self.active = trainer.cfg.sampler.name == "ohem"
        with (self.out_dir / "attempt_starts.txt").open("a") as fh:
            fh.write(f"{trainer.iteration}\n")

    def on_step(self, iteration: int, stats: dict[str, float]) -> None:
        marker = self.out_dir / "failed_once"
        if self.active and iteration == 12 and not marker.exists():
            marker.write_text("1")
            raise RuntimeError("injected failure at iteration 12")


class RecordProcess(Hook):
    """Appends '<pid> <sampler>' to the experiment's trials folder: shows which trials shared a
    (reused) Ray worker process."""

    def on_train_start(self, trainer: Any) -> None:
        import os

        with (Path(trainer.out_dir).parent / "processes.txt").open("a") as fh:
            fh.write(f"{os.getpid()} {trainer.cfg.sampler.name}\n")
