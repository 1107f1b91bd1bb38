"""The search table: every Optuna trial of an experiment with its sampled values, its outcome
and where it stopped, ranked by the metric the search optimised (the view Ray Tune and Optuna
leave to the user). Every number says the split it was measured on: a search selects on val
(eval/val/*), and a finished trial's test mAP (final/mAP) stands beside it, unused for selection."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from ohem_tune import tracking_keys as K
from ohem_tune.report.data import ReportData
from ohem_tune.report.format import format_lr
from ohem_tune.report.runs import INCLUDED_STATUS
from ohem_tune.report.table import MISSING, Cell, Column, Table, text_cell
from ohem_tune.report.tables import add_measured_note

STATUS_ORDER = {"FINISHED": 0, "PRUNED": 1}  # anything else (FAILED, RUNNING, ...) after


def metric_split(metric: str) -> str | None:
    """The split a metric key was measured on: 'val' (eval/val/*, final/val/*), 'test' (the
    other eval/* and final/* keys) or None (train/*: no evaluation split)."""
    group, _, name = metric.partition("/")
    if group not in ("eval", "final"):
        return None
    return "val" if name.startswith(K.VAL_GROUP) else "test"


def metric_label(metric: str) -> str:
    """A reader's name for a metric with its split: 'val mAP', 'test mAP', else the key."""
    split = metric_split(metric)
    if split is None:
        return metric
    name = metric.partition("/")[2].removeprefix(K.VAL_GROUP)
    return f"{split} {name}"


def on_test_split(metric: str) -> str | None:
    """The final/* key of the same metric on the test split, for a val metric (else None)."""
    if metric_split(metric) != "val":
        return None
    return "final/" + metric.partition("/")[2].removeprefix(K.VAL_GROUP)


def search_trials(data: ReportData, progress: pd.DataFrame) -> pd.DataFrame:
    """Per search trial: number (start order), status, last iteration and value of the search
    metric, the same metric on the test split (finished trials of a val search), the sampled
    point and the error. `progress` is the metric's history (run_id, step, value); a finished
    trial's value is its final/ alias when the metric is an eval/ one."""
    metric = data.layout.search_metric
    final_col = "metrics.final/" + metric.removeprefix("eval/")
    test_key = on_test_split(metric)
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
        test_value = math.nan
        if test_key is not None and run["status"] == INCLUDED_STATUS:
            test_value = run.get(f"metrics.{test_key}")
            test_value = float(test_value) if _finite(test_value) else math.nan
        rows.append(
            {
                "run_id": run["run_id"],
                "number": number,
                "status": run["status"],
                "iteration": iteration,
                "value": value,
                "test_value": test_value,
                "point": json.loads(run["search_point"]),
                "error": run.get("error"),
            }
        )
    columns = ["run_id", "number", "status", "iteration", "value", "test_value", "point", "error"]
    trials = pd.DataFrame(rows, columns=columns)
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
    label = metric_label(metric)
    header = f"{label} (selection)" + (" (%)" if percent else "")
    test_key = on_test_split(metric)
    test_label = metric_label(test_key) if test_key else ""
    extra = [Column(test_label + (" (%)" if percent else ""))] if test_key else []
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
        + extra
        + [Column(k, "l") for k in keys],
    )
    rank = 0
    previous = None
    for _, trial in trials.iterrows():
        finished = trial["status"] == INCLUDED_STATUS
        rank += finished
        shown, text = _shown(trial["value"], percent)
        cells = [
            Cell(str(rank) if finished else ""),
            Cell(f"t{int(trial['number']):02d}"),
            Cell(str(trial["status"]).lower()),
            text_cell(int(trial["iteration"]) if _finite(trial["iteration"]) else None),
            Cell(text, shown if finished else None),  # only finished trials compete for bold
        ]
        if test_key:  # reported beside the selection, never ranked on (no bold)
            cells.append(Cell(_shown(trial["test_value"], percent)[1]))
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
    table.notes.append(_selection_note(metric, test_key))
    table.notes.append(
        "trial tNN: the order the trials started in (the run's search point is its tag "
        "`ohem_tune.search_point`); — under a parameter: not sampled (its `when` condition "
        "did not hold)."
    )
    add_measured_note(table, data, [], groups=_measured_trials(data, trials))
    failed = trials[~trials["status"].isin(list(STATUS_ORDER))]
    for _, trial in failed.iterrows():
        error = str(trial["error"]).splitlines()[0] if _finite_text(trial["error"]) else "no error"
        table.notes.append(f"t{int(trial['number']):02d} {str(trial['status']).lower()}: {error}")
    return table


def _measured_trials(data: ReportData, trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The runs of the trials that measured something (finished or stopped by the scheduler),
    by trial name, for the 'Measured:' line."""
    runs = data.search_runs.set_index("run_id", drop=False)
    return {
        f"t{int(trial['number']):02d}": runs.loc[[trial["run_id"]]]
        for _, trial in trials.iterrows()
        if trial["status"] in STATUS_ORDER and trial["run_id"] in runs.index
    }


def _shown(value: Any, percent: bool) -> tuple[float | None, str]:
    """(the displayed number, its text): mAPs in percent to 0.1, the rest to 4 digits."""
    if not _finite(value):
        return None, MISSING
    shown = round(float(value) * (100.0 if percent else 1.0), 1 if percent else 4) + 0.0
    return shown, f"{shown:.1f}" if percent else f"{shown:.4g}"


def _selection_note(metric: str, test_key: str | None) -> str:
    """Which split the search selected on, in words (every search table says it)."""
    split = metric_split(metric)
    if split == "val":
        return (
            "Selection used the val split (dataset.val_split; the synthetic set's own val "
            f"split): Optuna ranked and ASHA stopped trials on {metric}. "
            f"{metric_label(test_key or '')} ({test_key}) is each finished trial's one "
            "evaluation on the test split, after training; it selected nothing."
        )
    if split == "test":
        return (
            f"Selection used the test split ({metric}, search.allow_test_selection): these "
            "numbers are not an unbiased estimate of test performance."
        )
    return f"Selection used {metric}, measured on no evaluation split."


def _finite_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
