"""mAP curves and the equal-time column: interpolation on a known curve, the column and the
figures from a real MLflow store, and a report whose runs evaluated only at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ohem_tune.report import ReportResult, build_report
from ohem_tune.report.curves import AtTime, join_curves, value_at
from ohem_tune.report.table import Table
from ohem_tune.report.tables import EQUAL_TIME_HEADER
from tests.report.mlflow_store import (
    COST,
    EVAL_STEPS,
    EXPERIMENT,
    eval_map,
    fill_store,
    sec_per_iter,
    write_spec,
)
from tests.report.test_tables import T2, _rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# a known piecewise-linear curve: (training seconds, mAP)
TIMES = [10.0, 20.0, 40.0]
VALUES = [0.2, 0.4, 0.5]


@pytest.mark.parametrize(
    "at,expected",
    [(10.0, 0.2), (20.0, 0.4), (40.0, 0.5), (15.0, 0.3), (25.0, 0.425), (30.0, 0.45)],
)
def test_value_at_points_and_between_them(at: float, expected: float) -> None:
    point = value_at(TIMES, VALUES, at)
    assert point.value == pytest.approx(expected, abs=1e-12)
    assert not point.clamped


def test_value_at_clamps_past_the_last_point_and_has_none_before_the_first() -> None:
    assert value_at(TIMES, VALUES, 40.5) == AtTime(0.5, clamped=True)
    assert value_at(TIMES, VALUES, 1e9) == AtTime(0.5, clamped=True)
    assert value_at(TIMES, VALUES, 9.99) == AtTime(None)
    assert value_at([], [], 5.0) == AtTime(None)
    assert value_at([30.0], [0.6], 30.0) == AtTime(0.6)  # one point: exact there only
    assert value_at([30.0], [0.6], 31.0) == AtTime(0.6, clamped=True)


def test_value_at_rejects_a_bad_curve() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        value_at([10.0, 5.0], [0.1, 0.2], 7.0)
    with pytest.raises(ValueError, match="2 times but 1 values"):
        value_at([1.0, 2.0], [0.1], 1.5)


def test_join_keeps_steps_with_both_metrics_and_the_last_of_a_repeated_step() -> None:
    maps = pd.DataFrame(
        {"run_id": ["a", "a", "a", "a"], "step": [1, 2, 2, 3], "value": [0.1, 0.2, 0.25, 0.3]}
    )
    seconds = pd.DataFrame({"run_id": ["a", "a"], "step": [2, 3], "value": [5.0, 7.0]})
    joined = join_curves(maps, seconds)
    assert joined.to_dict("list") == {
        "run_id": ["a", "a"],
        "step": [2, 3],
        "seconds": [5.0, 7.0],
        "map": [0.25, 0.3],
    }


def _curve(variant: str, seed: int, final_map: float) -> tuple[list[float], list[float]]:
    spi = sec_per_iter(variant, seed)
    return [spi * s for s in EVAL_STEPS], [eval_map(final_map, s) for s in EVAL_STEPS]


def _table(result: ReportResult, key: str) -> Table:
    return next(t for t in result.tables if t.key == key)


def test_equal_time_column_from_the_store(built: ReportResult) -> None:
    table = _table(built, "ablation")
    rows = _rows(table)
    # ohem_vggm vs frcn_vggm by seed: the OHEM curve read (np.interp) at FRCN's final seconds
    frcn, ohem = {0: 0.50, 1: 0.52, 2: 0.54}, {0: 0.55, 1: 0.58, 2: 0.58}
    diffs = []
    for seed in (0, 1, 2):
        times, values = _curve("ohem_vggm", seed, ohem[seed])
        at = COST[("frcn_vggm", seed)][0] * EVAL_STEPS[-1]
        diffs.append((np.interp(at, times, values) - frcn[seed]) * 100)
    mean = float(np.mean(diffs))
    half = T2 * float(np.std(diffs, ddof=1)) / np.sqrt(3)
    expected = f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}] (n=3)"
    assert rows["OHEM/VGGM"][EQUAL_TIME_HEADER] == expected
    assert rows["OHEM/VGGM"]["Δ vs baseline [95% CI]"] != expected  # earlier: a smaller gain
    # seed 0 is faster than frcn_vgg16 (its final mAP, marked); seed 1 evaluates too late
    assert rows["OHEM +M +B/VGG16"][EQUAL_TIME_HEADER] == "+10.0 (n=1)*"
    assert rows["OHEM/VGG16"][EQUAL_TIME_HEADER] == "—"  # H100 vs CPU: not compared
    assert rows["Fast R-CNN/VGGM"][EQUAL_TIME_HEADER] == "baseline"
    assert rows["Removing hard mining heuristic/VGGM"][EQUAL_TIME_HEADER] == "—"  # no runs
    notes = "\n".join(table.notes)
    assert "*: for some seed the baseline trained longer" in notes
    assert (
        f"{EQUAL_TIME_HEADER}, no value for: `ohem_vgg16` seed 0 (measured on another device "
        "or CPU host than the baseline); `ohem_ms_vgg16` seed 1 (the baseline finished before "
        "the variant's first evaluation)." in table.notes
    )


def test_curve_figures_and_history_are_written(built: ReportResult) -> None:
    for name in ("fig_map_vs_iter.png", "fig_map_vs_time.png"):
        data = (built.out_dir / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, name
    page = (built.out_dir / "README.md").read_text()
    assert "(fig_map_vs_iter.png)" in page and "(fig_map_vs_time.png)" in page
    history = pd.read_parquet(built.out_dir / "eval_history.parquet")
    runs = built.runs[built.runs["status"] == "FINISHED"]  # superseded ones too
    assert set(history["run_id"]) == set(runs["run_id"])
    runs = runs[~runs["superseded"]]
    run = runs[(runs["variant"] == "ohem_vggm") & (runs["seed"] == 1)].iloc[0]
    curve = history[history["run_id"] == run["run_id"]]
    times, values = _curve("ohem_vggm", 1, 0.58)
    assert curve["step"].tolist() == list(EVAL_STEPS)
    assert curve["seconds"].tolist() == pytest.approx(times)
    assert curve["map"].tolist() == pytest.approx(values)


@pytest.mark.parametrize("eval_steps", [(EVAL_STEPS[-1],), ()], ids=["final_only", "none"])
def test_report_without_periodic_evaluations_still_builds(
    tmp_path: Path, eval_steps: tuple[int, ...]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fill_store(uri, eval_steps=eval_steps)
    spec = write_spec(tmp_path / "spec.yaml")
    result = build_report(str(spec), uri, out=tmp_path / "reports")
    table = _table(result, "ablation")
    assert EQUAL_TIME_HEADER not in [c.header for c in table.columns]
    note = f"{EQUAL_TIME_HEADER}: not shown: no run logged two or more evaluations"
    assert any(n.startswith(note) for n in table.notes)
    out = result.out_dir
    assert out.name == EXPERIMENT and (out / "fig_map.png").is_file()
    assert not list(out.glob("fig_map_vs_*.png"))
    assert note in (out / "README.md").read_text()
