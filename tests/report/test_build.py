"""The whole report: files written, figures non-empty, Parquet round trip, index page, CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ohem_tune.errors import ConfigError
from ohem_tune.report import ReportResult, build_report, parse_formats
from ohem_tune.report.figures import loss_curves
from tests.report.mlflow_store import (
    EXPERIMENT,
    RUN_SECONDS,
    RUNS,
    loss_value,
    run_report_cli,
    write_spec,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_files_written(built: ReportResult) -> None:
    names = {p.name for p in built.files}
    assert {"runs.parquet", "loss_history.parquet", "README.md", "report.tex"} <= names
    assert {"fig_loss_per_roi.png", "fig_map.png", "fig_cost.png"} <= names
    assert built.out_dir.name == EXPERIMENT
    for path in built.files:
        assert path.is_file() and path.stat().st_size > 0, path


def test_figures_are_real_pngs(built: ReportResult) -> None:
    for name in ("fig_loss_per_roi.png", "fig_map.png", "fig_cost.png"):
        data = (built.out_dir / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 10_000  # axes, lines and text, not an empty canvas


def test_parquet_round_trip(built: ReportResult) -> None:
    runs = pd.read_parquet(built.out_dir / "runs.parquet")
    assert len(runs) == len(RUNS)
    assert runs["superseded"].sum() == 2
    assert set(runs["status"]) == {"FINISHED", "FAILED", "PRUNED"}
    history = pd.read_parquet(built.out_dir / "loss_history.parquet")
    finished = runs[
        runs["status"] == "FINISHED"
    ]  # superseded ones too: a later build may show them
    assert set(history["run_id"]) == set(finished["run_id"])
    assert finished["superseded"].any()


def test_loss_curve_is_mean_over_seeds(built: ReportResult, store: str, spec_path: Path) -> None:
    from ohem_tune.report.data import ReportData
    from ohem_tune.report.layout import layout_from_spec

    runs = pd.read_parquet(built.out_dir / "runs.parquet")
    history = pd.read_parquet(built.out_dir / "loss_history.parquet")
    curves = loss_curves(ReportData(layout_from_spec(spec_path), runs), history)
    row = curves[(curves["variant"] == "ohem_vggm") & (curves["step"] == 10)].iloc[0]
    expected = sum(loss_value("ohem_vggm", s, 10) for s in (0, 1, 2)) / 3
    assert row["mean"] == pytest.approx(expected)
    assert row["count"] == 3


def test_index_page_embeds_tables_figures_and_time(built: ReportResult) -> None:
    page = (built.out_dir / "README.md").read_text()
    assert "### Table 1: ablations" in page
    assert "![" in page and "(fig_loss_per_roi.png)" in page
    assert "- Device: cpu (14 runs), NVIDIA H100 80GB HBM3 (1 run)" in page
    total_min = len(RUNS) * RUN_SECONDS // 60
    assert f"sum of the {len(RUNS)} trial runs' durations): {total_min} min 00 s" in page
    assert "Wall time (first trial start to last trial end)" in page
    assert "Measured on CPU at reduced scale" in page
    parent_s = len(RUNS) * 100 + RUN_SECONDS  # the parent run spans every trial
    assert f"invocations: 1, {parent_s // 60} min {parent_s % 60:02d} s in all" in page


def test_report_from_tags_alone(store: str, tmp_path: Path) -> None:
    result = build_report(EXPERIMENT, store, out=tmp_path, formats="md")
    table = next(t for t in result.tables if t.key == "ablation")
    assert [r[7].text for r in table.rows] == ["3", "2", "3", "1", "2"]  # n; no spec-only row
    assert {p.name for p in result.files} >= {"README.md", "table_ablation.md"}
    assert not list(result.out_dir.glob("*.png")) and not list(result.out_dir.glob("*.tex"))


def test_spec_table_set_is_respected_and_stale_files_removed(
    built: ReportResult, store: str, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "spec.yaml", tables=["ablation"])
    out = tmp_path / "out"
    (out / EXPERIMENT).mkdir(parents=True)
    (out / EXPERIMENT / "table_cost.md").write_text("stale")
    result = build_report(str(spec), store, out=out, formats="md,tex")
    assert [t.key for t in result.tables] == ["claims", "ablation"]  # claims: whenever listed
    assert not (out / EXPERIMENT / "table_cost.md").exists()


def test_parse_formats() -> None:
    assert parse_formats("md, tex,md") == ("md", "tex")
    with pytest.raises(ConfigError, match="unknown format 'pdf'"):
        parse_formats("md,pdf")


def test_cli_builds_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, store: str, tmp_path: Path
) -> None:
    code = run_report_cli(
        monkeypatch, EXPERIMENT, "--tracking-uri", store, "--out", str(tmp_path), "--format", "md"
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"report {EXPERIMENT}: {len(RUNS)} runs" in out
    assert (tmp_path / EXPERIMENT / "README.md").is_file()


@pytest.mark.parametrize(
    "args,message",
    [
        (["nope", "--tracking-uri", "STORE"], "no experiment named 'nope'"),
        (["x", "--tracking-uri", "sqlite:///MISSING"], "no MLflow store there"),
        (["x", "--format", "pdf"], "unknown format 'pdf'"),
        (["missing_spec.yaml", "--tracking-uri", "STORE"], "spec file not found"),
    ],
)
def test_cli_user_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    store: str,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    args = [a.replace("STORE", store).replace("MISSING", str(tmp_path / "none.db")) for a in args]
    assert run_report_cli(monkeypatch, *args, "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "none.db").exists()


def test_profile_filter(store: str, tmp_path: Path) -> None:
    result = build_report(EXPERIMENT, store, out=tmp_path, formats="md", profile="cpu_test")
    assert len(result.runs) == len(RUNS)
    with pytest.raises(ConfigError, match="no runs of that profile.*cpu_test"):
        build_report(EXPERIMENT, store, out=tmp_path, formats="md", profile="paper")
