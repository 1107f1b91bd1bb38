"""Test-mAP curves over training, and Table 1's equal-time comparison.

Every evaluation logs eval/mAP and eval/train_seconds (the training seconds so far: iterations
only) at its iteration, so a run's evaluations form a curve of mAP against iteration and against
training time. The equal-time comparison asks what a variant had reached when its same-seed
baseline finished training: the variant's curve, linear in training seconds between its
evaluations, read at the baseline's final/train_seconds, paired by seed with the baseline's
final/mAP. "OHEM is better" is Δ vs baseline; "better per unit of training time" is this one.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ohem_tune import tracking_keys as K
from ohem_tune.report.data import ReportData
from ohem_tune.report.layout import Variant
from ohem_tune.report.runs import fetch_histories
from ohem_tune.report.stats import PairedDiff, paired_difference

COLUMNS = ["run_id", "step", "seconds", "map"]
FINAL_MAP = f"metrics.{K.FINAL_MAP}"
FINAL_SECONDS = f"metrics.{K.FINAL_TRAIN_SECONDS}"
MIN_POINTS = 2  # the final evaluation alone is a point, not a curve
# why a seed has no equal-time value (the table's note lists them)
NO_CURVE = "no eval/mAP + eval/train_seconds logged"
BEFORE_FIRST = "the baseline finished before the variant's first evaluation"
OTHER_MACHINE = "measured on another device or CPU host than the baseline"
NO_BASELINE_TIME = "the baseline logged no final/train_seconds"


def join_curves(maps: pd.DataFrame, seconds: pd.DataFrame) -> pd.DataFrame:
    """Per run and evaluated step (both histories: run_id, step, value): seconds and mAP.

    Steps that logged only one of the two are dropped; a step logged twice (a resumed run)
    keeps its last value.
    """
    parts = [
        h.drop_duplicates(["run_id", "step"], keep="last").rename(columns={"value": name})
        for h, name in ((maps, "map"), (seconds, "seconds"))
    ]
    frame = parts[0].merge(parts[1], on=["run_id", "step"], how="inner")
    return frame[COLUMNS].sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)


def fetch_curves(client: Any, run_ids: Sequence[str]) -> pd.DataFrame:
    """The runs' evaluation curves from MLflow: columns run_id, step, seconds, map."""
    return join_curves(
        fetch_histories(client, run_ids, K.MAP),
        fetch_histories(client, run_ids, K.EVAL_TRAIN_SECONDS),
    )


def empty_curves() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS)


@dataclass(frozen=True)
class AtTime:
    """A curve read at a time: None before its first point; `clamped` past its last point,
    where the value is the last one (no extrapolation)."""

    value: float | None
    clamped: bool = False


def value_at(seconds: Sequence[float], values: Sequence[float], at: float) -> AtTime:
    """The curve through (seconds[i], values[i]) at time `at`: linear between neighbouring
    points, exact at a point, None before the first, the last value (clamped) after the last."""
    if len(seconds) != len(values):
        raise ValueError(f"curve has {len(seconds)} times but {len(values)} values")
    if any(b < a for a, b in zip(seconds, seconds[1:], strict=False)):
        raise ValueError(f"curve times must not decrease, got {list(seconds)}")
    if not len(seconds) or at < seconds[0]:
        return AtTime(None)
    if at > seconds[-1]:
        return AtTime(float(values[-1]), clamped=True)
    i = bisect.bisect_left(seconds, at)
    if seconds[i] == at:
        return AtTime(float(values[i]))
    t0, t1 = seconds[i - 1], seconds[i]
    weight = (at - t0) / (t1 - t0)
    return AtTime(float(values[i - 1] + weight * (values[i] - values[i - 1])))


def by_run(curves: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The curves split by run id (each sorted by step)."""
    return {str(run_id): group for run_id, group in curves.groupby("run_id", sort=False)}


def has_periodic(data: ReportData, curves: pd.DataFrame) -> bool:
    """Whether any finished run of the layout has a curve (MIN_POINTS evaluations or more)."""
    if curves.empty:
        return False
    finished = {rid for v in data.layout.variants for rid in data.finished(v)["run_id"]}
    counts = curves[curves["run_id"].isin(finished)].groupby("run_id").size()
    return bool((counts >= MIN_POINTS).any())


@dataclass(frozen=True)
class EqualTime:
    """A variant vs its baseline at the baseline's training time, paired by seed.

    `clamped`: seeds where the baseline trained longer than the variant's last evaluation (the
    variant's last value is used); `missing`: reason -> seeds without a value.
    """

    diff: PairedDiff
    clamped: tuple[int, ...] = ()
    missing: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _machine(run: pd.Series) -> tuple[Any, ...]:
    """What training seconds depend on: the device, and for the CPU the host as well."""
    device = run.get("device")
    return (device, run.get("host")) if str(device).lower() == "cpu" else (device,)


def _finite(value: Any) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))


def equal_time(
    data: ReportData, curves: dict[str, pd.DataFrame], variant: Variant, baseline: Variant
) -> EqualTime:
    """Per seed both finished: the variant's mAP at the baseline's final/train_seconds (see
    `value_at`) minus the baseline's final/mAP; mean and 95% t interval by `paired_difference`.
    Seeds run on different machines are not compared: their seconds do not measure one thing."""
    bases = {
        int(run["seed"]): run
        for _, run in data.finished(baseline).iterrows()
        if _finite(run["seed"])
    }
    at_time: dict[int, float] = {}
    base_map: dict[int, float] = {}
    clamped: list[int] = []
    missing: dict[str, list[int]] = {}
    for _, run in data.finished(variant).iterrows():
        if not _finite(run["seed"]) or int(run["seed"]) not in bases:
            continue  # unpaired, as in Δ vs baseline
        seed = int(run["seed"])
        base = bases[seed]
        curve = curves.get(str(run["run_id"]))
        if _machine(run) != _machine(base):
            reason = OTHER_MACHINE
        elif not _finite(base.get(FINAL_SECONDS)) or not _finite(base.get(FINAL_MAP)):
            reason = NO_BASELINE_TIME
        elif curve is None or curve.empty:
            reason = NO_CURVE
        else:
            point = value_at(list(curve["seconds"]), list(curve["map"]), float(base[FINAL_SECONDS]))
            if point.value is not None:
                at_time[seed], base_map[seed] = point.value, float(base[FINAL_MAP])
                if point.clamped:
                    clamped.append(seed)
                continue
            reason = BEFORE_FIRST
        missing.setdefault(reason, []).append(seed)
    return EqualTime(
        paired_difference(at_time, base_map),
        tuple(sorted(clamped)),
        {reason: tuple(sorted(seeds)) for reason, seeds in missing.items()},
    )


def curve_stats(data: ReportData, curves: pd.DataFrame) -> pd.DataFrame:
    """Per variant and evaluated step, over its finished seeds: the mean training seconds, and
    the mean, min, max and count of mAP (columns variant, step, seconds, mean, min, max, count)."""
    columns = ["variant", "step", "seconds", "mean", "min", "max", "count"]
    frames = []
    for v in data.layout.variants:
        curve = curves[curves["run_id"].isin(set(data.finished(v)["run_id"]))]
        if curve.empty:
            continue
        stats = curve.groupby("step").agg(
            seconds=("seconds", "mean"),
            mean=("map", "mean"),
            min=("map", "min"),
            max=("map", "max"),
            count=("map", "size"),
        )
        frames.append(stats.reset_index().assign(variant=v.name))
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]
