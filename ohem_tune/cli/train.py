"""`ohem-tune train CONFIG.yaml`: train one Fast R-CNN (no Ray, no MLflow) with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ohem_tune.cli.common import console
from ohem_tune.errors import ConfigError


def _progress_hook(quiet: bool):
    """A Hook that drives a rich progress bar: iteration, loss, sec/iter, ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ohem_tune import tracking_keys as K
    from ohem_tune.engine.hooks import Hook

    class ProgressHook(Hook):
        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("[bold]train[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]} s/it"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                disable=quiet,
            )
            self.task: Any = None
            self.recent: list[float] = []

        def on_train_start(self, trainer: Any) -> None:
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=trainer.max_iter, completed=trainer.iteration, loss="-", speed="-"
            )

        def on_step(self, iteration: int, stats: dict[str, float]) -> None:
            self.recent = (self.recent + [stats[K.SEC_PER_ITER]])[-20:]
            speed = sum(self.recent) / len(self.recent)
            fields = {"speed": f"{speed:.3f}"}
            if K.LOSS in stats:  # read from the device on log iterations only
                fields["loss"] = f"{stats[K.LOSS]:.4f}"
            self.progress.update(self.task, completed=iteration, **fields)

        def on_eval(self, iteration: int, metrics: dict[str, float]) -> None:
            shown = ", ".join(
                f"{k.removeprefix('eval/')} {v:.4f}"
                for k, v in metrics.items()
                if k in (K.MAP, K.MAP_AREA)
            )
            self.progress.console.print(f"iteration {iteration}: {shown or 'evaluated'}")

        def on_train_end(self, result: dict[str, Any]) -> None:
            self.progress.stop()

    return ProgressHook()


def train(
    config: Path = typer.Argument(..., help="Training config YAML (see configs/)."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config value, KEY=VALUE (repeatable), e.g. solver.lr=0.003."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output directory (default: outputs/<config name>)."
    ),
    resume: bool = typer.Option(
        True, "--resume/--no-resume", help="Continue from OUT/checkpoints/last when it exists."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train Fast R-CNN on CONFIG; write checkpoints, metrics.parquet and config.yaml to OUT."""
    import logging

    from ohem_tune.config import load_config

    cfg = load_config(config, overrides)
    out_dir = out if out is not None else Path("outputs") / config.stem

    from ohem_tune.engine.checkpoint import last_checkpoint
    from ohem_tune.engine.trainer import Trainer

    if not resume and last_checkpoint(out_dir) is not None:
        raise ConfigError(
            f"--out {out_dir}: already holds checkpoints; pass --resume to continue that run "
            "or choose a new --out directory"
        )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    trainer = Trainer(cfg, out_dir, hooks=[_progress_hook(quiet)], resume=resume)
    if trainer.iteration:
        console.print(
            f"resuming {out_dir} at iteration {trainer.iteration}/{trainer.max_iter}",
            soft_wrap=True,
        )
    final = trainer.train()
    for key, value in sorted(final.items()):
        console.print(f"{key:<28} {value:.4f}")
    console.print(f"checkpoints, metrics.parquet and config.yaml in {out_dir}", soft_wrap=True)
