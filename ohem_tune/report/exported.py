"""Runs read back from an earlier report's Parquet files, to report them beside a store's runs.

A report folder written with the parquet format holds `runs.parquet` (one row per trial run),
`eval_history.parquet` (test mAP and training seconds at each evaluation),
`loss_history.parquet` (loss per RoI per step) and `invocations.parquet` (the parent runs).
`--add-runs FOLDER` joins those runs to the ones MLflow holds, e.g. seeds added later in another
store; a run the store also holds (same run_id) is read from the store, and a trial run in both
(same variant, configuration and seed) is kept once, the later one, by the usual superseding
rule. `--no-store` reports the folders' runs alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ohem_tune import tracking_keys as K
from ohem_tune.errors import TrackingError
from ohem_tune.report.curves import COLUMNS as CURVE_COLUMNS
from ohem_tune.report.runs import (
    INCLUDED_STATUS,
    INVOCATION_COLUMNS,
    invocations_frame,
    tidy_runs,
)

RUNS_FILE, CURVES_FILE, LOSS_FILE = "runs.parquet", "eval_history.parquet", "loss_history.parquet"
INVOCATIONS_FILE = "invocations.parquet"  # the parent runs: one per `ohem-tune run`
HISTORY_COLUMNS = ["run_id", "step", "value"]
TRIAL_KEY = ["variant", "config_hash", "seed"]
# what a run row needs to enter the tables; the other tag columns may predate the folder
REQUIRED_COLUMNS = ["run_id", "variant", "seed", "status", "config_hash", "start_time", "end_time"]


@dataclass
class ExportedRuns:
    """Runs of earlier report folders: the runs, their curves, loss histories and `ohem-tune run`
    invocations, and notes."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    losses: pd.DataFrame
    invocations: pd.DataFrame
    # folder, runs read, whether it recorded its invocations
    sources: list[tuple[Path, int, bool]] = field(default_factory=list)
    # history file -> "FILE: missing; its N finished runs have no" (warned where it is needed)
    missing: dict[str, list[str]] = field(default_factory=lambda: {"curves": [], "losses": []})

    def missing_warnings(self, history: str, what: str) -> list[str]:
        """Warnings for folders without the `history` ("curves" / "losses") a table needs."""
        return [f"{text} {what}" for text in self.missing[history]]


def _read(path: Path, columns: Sequence[str], fix: str) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise TrackingError(f"{path}: not a readable Parquet file ({exc}); {fix}") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TrackingError(
            f"{path}: column {missing[0]} missing: not written by `ohem-tune report`; {fix}"
        )
    return frame


def read_report_folder(folder: str | Path) -> ExportedRuns:
    """The runs, curves and loss histories an earlier `ohem-tune report` wrote into `folder`."""
    folder = Path(folder)
    fix = "pass a folder an `ohem-tune report --format ...,parquet` wrote"
    runs_path = folder / RUNS_FILE
    if not runs_path.is_file():
        raise TrackingError(f"{runs_path}: no such file; {fix}")
    # typed as a store's runs; tag columns added in later versions read as unknown
    runs = tidy_runs(_read(runs_path, REQUIRED_COLUMNS, fix))
    calls = folder / INVOCATIONS_FILE
    invocations = (
        _read(calls, INVOCATION_COLUMNS, fix)[INVOCATION_COLUMNS]
        if calls.is_file()
        else invocations_frame([])
    )
    found = ExportedRuns(runs, pd.DataFrame(columns=CURVE_COLUMNS), _empty_history(), invocations)
    found.sources.append((folder, len(runs), calls.is_file()))
    finished = int((runs["status"] == INCLUDED_STATUS).sum())
    for name, columns, attr in (
        (CURVES_FILE, CURVE_COLUMNS, "curves"),
        (LOSS_FILE, HISTORY_COLUMNS, "losses"),
    ):
        path = folder / name
        if path.is_file():
            setattr(found, attr, _read(path, columns, fix)[columns])
        elif finished:
            found.missing[attr].append(f"{path}: missing; its {finished} finished runs have no")
    return found


def _empty_history() -> pd.DataFrame:
    return pd.DataFrame(columns=HISTORY_COLUMNS)


def read_report_folders(folders: Sequence[str | Path]) -> ExportedRuns:
    """Every folder's runs, curves and histories together (see read_report_folder)."""
    parts = [read_report_folder(f) for f in folders]
    return ExportedRuns(
        runs=_concat([p.runs for p in parts]),
        curves=_concat([p.curves for p in parts]),
        losses=_concat([p.losses for p in parts]),
        invocations=_concat([p.invocations for p in parts]),
        sources=[s for p in parts for s in p.sources],
        missing={k: [m for p in parts for m in p.missing[k]] for k in ("curves", "losses")},
    )


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    kept = [f for f in frames if len(f)]
    if not kept:
        return frames[0].iloc[0:0] if frames else pd.DataFrame()
    return pd.concat(kept, ignore_index=True) if len(kept) > 1 else kept[0]


def _not_in(exported: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """The exported rows whose run_id the store does not hold, each run once."""
    return exported[~exported["run_id"].isin(stored["run_id"])].drop_duplicates("run_id")


def join_runs(stored: pd.DataFrame, exported: pd.DataFrame) -> pd.DataFrame:
    """The store's runs and the exported ones not in the store (by run_id), superseding marked
    anew over both and sorted as `runs_frame` sorts."""
    extra = _not_in(exported, stored)
    if extra.empty:
        return stored
    return tidy_runs(pd.concat([stored, extra], ignore_index=True) if len(stored) else extra)


def join_invocations(stored: pd.DataFrame, exported: pd.DataFrame) -> pd.DataFrame:
    """The store's `ohem-tune run` invocations and the exported ones it does not hold."""
    extra = _not_in(exported, stored)
    if extra.empty:
        return stored
    return pd.concat([stored, extra], ignore_index=True) if len(stored) else extra.copy()


# what a trial measures (not what it cost: times and memory differ from run to run)
RESULT_METRICS = (K.FINAL_MAP, K.FINAL_MAP_AREA, K.FINAL_VAL_MAP, K.FINAL_LOSS_PER_ROI_ALL)
RESULT_PREFIXES = (K.FINAL_AP_PREFIX, K.FINAL_COCO_PREFIX)


def _is_result(metric: str) -> bool:
    return metric in RESULT_METRICS or metric.startswith(RESULT_PREFIXES)


@dataclass(frozen=True)
class Overlap:
    """Trials (variant, configuration, seed) finished in both sources, and those whose final
    metrics differ between the two."""

    trials: int
    differing: tuple[str, ...]


def compare_overlap(stored: pd.DataFrame, exported: pd.DataFrame) -> Overlap:
    """Compare the final results (mAP, APs, loss per RoI; not times or memory) of trials
    finished both in the store and in the exported runs: the same machine, code and
    configuration give identical numbers, so a difference says the two sources are not the same
    experiment (another CPU model, another torch build)."""
    done = [
        f[(f["status"] == INCLUDED_STATUS) & f["seed"].notna() & ~f["superseded"]].drop_duplicates(
            TRIAL_KEY
        )
        for f in (stored, _not_in(exported, stored))
    ]
    both = done[0].merge(done[1], on=TRIAL_KEY, suffixes=("", "@exported"))
    finals = [
        c
        for c in both.columns
        if _is_result(c.removeprefix("metrics.")) and f"{c}@exported" in both.columns
    ]
    differing = []
    for _, row in both.iterrows():
        changed = [
            c.removeprefix("metrics.")
            for c in finals
            if not (pd.isna(row[c]) and pd.isna(row[f"{c}@exported"]))
            and row[c] != row[f"{c}@exported"]
        ]
        if changed:
            differing.append(f"{row['variant']} seed {int(row['seed'])} ({', '.join(changed[:3])})")
    return Overlap(len(both), tuple(differing))
