"""A live progress table of the running trials (rich), fed by a Ray Tune callback."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ohem_tune import tracking_keys as tk
from ohem_tune.orchestration import keys as tr


@dataclass
class Row:
    """What the table shows for one Tune trial."""

    name: str
    status: str = "PENDING"
    iteration: int = 0
    max_iter: int = 0
    loss: float | None = None
    metric: float | None = None
    sec_per_iter: float | None = None
    node: str = ""
    started: float | None = None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


class ProgressTable:
    """Tune callback building a live table (a line per finished trial when not on a terminal)."""

    def __init__(
        self,
        console: Console,
        name_of: Callable[[dict[str, Any]], tuple[str, int]],
        metric: str = tk.MAP,
        max_rows: int = 24,
    ) -> None:
        self.console = console
        self.name_of = name_of  # Tune config -> (display name, max_iter)
        self.metric = metric
        self.max_rows = max_rows
        self.rows: dict[str, Row] = {}
        self.live: Live | None = None
        self.started = time.time()
        self.callback = _make_callback(self)

    def __enter__(self) -> ProgressTable:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=2, get_renderable=self.table)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None

    def _row(self, trial: Any) -> Row:
        row = self.rows.get(trial.trial_id)
        if row is None:
            name, max_iter = self.name_of(trial.config)
            row = self.rows[trial.trial_id] = Row(name=name, max_iter=max_iter)
        return row

    def _start(self, trial: Any) -> None:
        row = self._row(trial)
        row.status = "RUNNING"
        row.started = row.started or time.time()

    def _result(self, trial: Any, result: dict[str, Any]) -> None:
        row = self._row(trial)
        row.status = "RUNNING"
        row.iteration = int(result.get(tr.ITERATION, row.iteration))
        row.loss = result.get(tk.LOSS, row.loss)
        row.metric = result.get(self.metric, result.get(tk.FINAL_MAP, row.metric))
        row.sec_per_iter = result.get(tk.SEC_PER_ITER, row.sec_per_iter)
        row.node = str(result.get("hostname", row.node))
        status = result.get(tr.STATUS)
        if status:
            row.status = str(status)

    def _done(self, trial: Any, fallback: str) -> None:
        row = self._row(trial)
        if row.status in ("RUNNING", "RESTORING", "RETRYING", "PENDING"):
            row.status = (
                "PRUNED" if fallback == "DONE" and row.iteration < row.max_iter else fallback
            )
            if row.status == "DONE":
                row.status = "FINISHED"
        if self.live is None:
            elapsed = time.time() - self.started
            self.console.print(
                f"[{elapsed:6.0f}s] {escape(row.name)}: {row.status} at iteration {row.iteration}"
                f"/{row.max_iter}, {self.metric} {_fmt(row.metric, '.4f')}",
                highlight=False,
            )

    def table(self) -> Table:
        """The rich table: running trials first, then the most recent others."""
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        elapsed = time.time() - self.started
        caption = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        table = Table(
            title=f"ohem-tune run: {len(self.rows)} trials seen, {elapsed:.0f}s",
            caption=caption,
            expand=False,
        )
        for col, justify in (
            ("trial", "left"), ("status", "left"), ("iter", "right"), ("loss", "right"),
            (self.metric, "right"), ("s/iter", "right"),
        ):  # fmt: skip
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        order = {"RUNNING": 0, "RESTORING": 0, "RETRYING": 0, "PENDING": 2}
        rows = sorted(self.rows.values(), key=lambda r: order.get(r.status, 1))
        for row in rows[: self.max_rows]:
            table.add_row(
                escape(row.name),
                row.status,
                f"{row.iteration}/{row.max_iter}",
                _fmt(row.loss, ".4f"),
                _fmt(row.metric, ".4f"),
                _fmt(row.sec_per_iter, ".3f"),
            )
        if len(rows) > self.max_rows:
            table.add_row(f"... {len(rows) - self.max_rows} more", "", "", "", "", "")
        return table


def _make_callback(table: ProgressTable) -> Any:
    """A Tune Callback forwarding to `table`; pickled into Tune's state, it becomes a no-op."""
    from ray.tune import Callback

    class _Forward(Callback):
        table: ProgressTable | None = None

        def __getstate__(self) -> dict[str, Any]:
            return {"table": None}

        def on_trial_start(self, iteration, trials, trial, **info):
            if self.table:
                self.table._start(trial)

        def on_trial_restore(self, iteration, trials, trial, **info):
            if self.table:
                self.table._row(trial).status = "RESTORING"

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.table:
                self.table._result(trial, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            if self.table:
                self.table._done(trial, "DONE")

        def on_trial_error(self, iteration, trials, trial, **info):
            if self.table:
                self.table._done(trial, "ERROR")

        def on_trial_recover(self, iteration, trials, trial, **info):
            if self.table:
                self.table._row(trial).status = "RETRYING"

    forward = _Forward()
    forward.table = table  # set on the instance: the class itself must not capture it
    return forward
