"""The search table: every Optuna trial of an experiment with its sampled values, its outcome
and where it stopped, ranked by the metric the search optimised (the view Ray Tune and Optuna
leave to the user)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from ohem_tune.report.data import ReportData
from ohem_tune.report.format import format_lr
from ohem_tune.report.runs import INCLUDED_STATUS
from ohem_tune.report.table import MISSING, Cell, Column, Table, text_cell

STATUS_ORDER = {"FINISHED": 0, "PRUNED": 1}  # anything else (FAILED, RUNNING, ...) after


def search_trials(data: ReportData, progress: pd.DataFrame) -> pd.DataFrame:
    """Per search trial: number (start order), status, last iteration and value of the search
    metric, the sampled point and the error. `progress` is the metric's history (run_id, step,
    value); a finished trial's value is its final/ alias when the metric is an eval/ one."""
    metric = data.layout.search_metric
    final_col = "metrics.final/" + metric.removeprefix("eval/")
    rows: list[dict[str, Any]] = []
    lasts = progress.groupby("run_id").last()  # histories come sorted by step
    for number, (_, run) in enumerate(data.search_runs.iterrows(), start=1):
        last = lasts.loc[run["run_id"]] if run["run_id"] in lasts.index else None
        value = float(last["value"]) if last is not None else math.nan
        iteration = int(last["step"]) if last is not None else None
        if run["status"] == INCLUDED_STATUS:
            if metric.startswith("eval/") and _finite(run.get(final_col)):
                value = float(run[final_col])
            max_iter = run.get("params.train.max_iter")
            iteration = int(float(max_iter)) if max_iter not in (None, "") else iteration
        elif not _finite(value) and _finite(run.get(f"metrics.{metric}")):
            value = float(run[f"metrics.{metric}"])
        rows.append(
            {
                "run_id": run["run_id"],
                "number": number,
                "status": run["status"],
                "iteration": iteration,
                "value": value,
                "point": json.loads(run["search_point"]),
                "error": run.get("error"),
            }
        )
    trials = pd.DataFrame(
        rows, columns=["run_id", "number", "status", "iteration", "value", "point", "error"]
    )
    if trials.empty:
        return trials
    sign = -1.0 if data.layout.search_mode == "max" else 1.0
    trials["_status"] = trials["status"].map(lambda s: STATUS_ORDER.get(s, 2))
    trials["_iter"] = -trials["iteration"].fillna(-1)
    trials["_value"] = (sign * trials["value"]).fillna(math.inf)
    trials = trials.sort_values(["_status", "_iter", "_value", "number"], kind="stable")
    return trials.drop(columns=["_status", "_iter", "_value"]).reset_index(drop=True)


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _is_mean_ap(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1] in ("mAP", "mAP_area") or metric.startswith("eval/coco/AP")


def format_value(value: Any, key: str) -> str:
    """A sampled value as a reader wants it: LRs as '3e-3', floats to 3 digits, the rest as is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if key.rsplit(".", 1)[-1] in ("lr", "base_lr"):
        return format_lr(float(f"{value:.3g}")) or str(value)  # 0.0037915 -> '3.79e-3'
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def search_table(data: ReportData, trials: pd.DataFrame) -> Table:
    """One row per search trial: rank, trial number, status, iteration reached, the metric and
    every sampled value ('—' where a conditional parameter was not sampled)."""
    layout = data.layout
    metric, keys = layout.search_metric, list(layout.search_keys)
    percent = _is_mean_ap(metric)
    header = f"{metric} (%)" if percent else metric
    better = "high" if layout.search_mode == "max" else "low"
    table = Table(
        key="search",
        title=f"Search trials ({layout.search_mode} {metric})",
        caption=(
            f"Every search trial of experiment `{layout.experiment}`: finished trials ranked by "
            f"{metric} ({layout.search_mode}), then the trials the scheduler stopped, by the "
            "iteration they reached, then failed ones; the sampled values beside each."
        ),
        columns=[Column("#"), Column("trial", "l"), Column("status", "l"), Column("iter")]
        + [Column(header, better=better)]
        + [Column(k, "l") for k in keys],
    )
    rank = 0
    previous = None
    for _, trial in trials.iterrows():
        finished = trial["status"] == INCLUDED_STATUS
        rank += finished
        value = trial["value"]
        shown = None
        text = MISSING
        if _finite(value):
            shown = round(float(value) * (100.0 if percent else 1.0), 1 if percent else 4) + 0.0
            text = f"{shown:.1f}" if percent else f"{shown:.4g}"
        cells = [
            Cell(str(rank) if finished else ""),
            Cell(f"t{int(trial['number']):02d}"),
            Cell(str(trial["status"]).lower()),
            text_cell(int(trial["iteration"]) if _finite(trial["iteration"]) else None),
            Cell(text, shown if finished else None),  # only finished trials compete for bold
        ]
        point = trial["point"]
        cells += [Cell(format_value(point[k], k)) if k in point else Cell(MISSING) for k in keys]
        table.add_row(cells, new_group=previous is not None and trial["status"] != previous)
        previous = trial["status"]
    table.mark_best()
    counts = trials["status"].value_counts() if len(trials) else pd.Series(dtype=int)
    table.notes.append(
        f"{len(trials)} trials: "
        + ", ".join(f"{int(n)} {str(s).lower()}" for s, n in counts.items())
        + f". iter: the last iteration that reported {metric} (finished: all of them)."
    )
    table.notes.append(
        "trial tNN: the order the trials started in (the run's search point is its tag "
        "`ohem_tune.search_point`); — under a parameter: not sampled (its `when` condition "
        "did not hold)."
    )
    failed = trials[~trials["status"].isin(list(STATUS_ORDER))]
    for _, trial in failed.iterrows():
        error = str(trial["error"]).splitlines()[0] if _finite_text(trial["error"]) else "no error"
        table.notes.append(f"t{int(trial['number']):02d} {str(trial['status']).lower()}: {error}")
    return table


def _finite_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
