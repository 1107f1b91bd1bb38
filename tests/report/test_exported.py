"""`--add-runs`: runs read back from an earlier report's Parquet files join a store's runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import tests.report.mlflow_store as known
from ohem_tune.errors import ConfigError, TrackingError
from ohem_tune.report import ReportResult, build_report
from ohem_tune.report.exported import read_report_folder
from tests.report.mlflow_store import run_report_cli


def _store(tmp: Path, monkeypatch: pytest.MonkeyPatch, keep) -> str:
    """A fresh SQLite store with the known runs `keep` selects, in their creation order."""
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with monkeypatch.context() as patch:
        patch.setattr(known, "RUNS", [r for r in known.RUNS if keep(r)])
        known.fill_store(uri)
    return uri


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory, spec_path: Path) -> tuple[Path, str]:
    """Seeds 0-1 reported from one store (the earlier folder), seeds 1-3 held by another."""
    patch = pytest.MonkeyPatch()
    try:
        first = _store(tmp_path_factory.mktemp("first"), patch, lambda r: r.seed <= 1)
        later = _store(tmp_path_factory.mktemp("later"), patch, lambda r: r.seed >= 1)
    finally:
        patch.undo()
    out = tmp_path_factory.mktemp("earlier")
    build_report(str(spec_path), first, out=out)
    return out / known.EXPERIMENT, later


def _copy(folder: Path, to: Path, edit=None) -> Path:
    """A copy of a report folder; `edit(runs)` changes its runs.parquet in place."""
    shutil.copytree(folder, to)
    if edit is not None:
        runs = pd.read_parquet(to / "runs.parquet")
        edit(runs)
        runs.to_parquet(to / "runs.parquet", index=False)
    return to


def test_split_runs_report_as_one_store(
    split: tuple[Path, str],
    spec_path: Path,
    built: ReportResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """Seeds 0-1 from an earlier report folder plus seeds 1-3 from a store give the tables of
    the one store that holds them all: claims, ablation (equal-time column: the curves), cost."""
    earlier, later = split
    out = tmp_path / "joined"
    code = run_report_cli(monkeypatch, str(spec_path), "--tracking-uri", later, "--out", str(out),
                "--add-runs", str(earlier))  # fmt: skip
    assert code == 0, capsys.readouterr()
    folder = out / known.EXPERIMENT
    for name in ("table_claims.md", "table_ablation.md", "table_cost.md", "table_per_class.md"):
        assert (folder / name).read_text() == (built.out_dir / name).read_text(), name
    page = (folder / "README.md").read_text()
    added = sum(1 for r in known.RUNS if r.seed <= 1)
    assert f"- Added runs: {added} from `{earlier / 'runs.parquet'}`" in page
    # seed 1 finished in both: frcn_vggm, frcn_vgg16, ohem_vggm, ohem_ms_vgg16 (same numbers)
    assert (
        "finished both in the store and in the added runs: 4; final results (mAP, APs, loss per "
        "RoI) identical in 4"
    ) in page
    assert "(of each, the later run is shown)" in page
    assert f"--add-runs {earlier}" in page  # the regenerating command names the folder
    # each store's trials start 100 s apart and run 60 s: spans summed, not the overlap's
    counts = [sum(1 for r in known.RUNS if keep(r.seed)) for keep in (lambda s: s <= 1,
              lambda s: s >= 1)]  # fmt: skip
    total = sum((n - 1) * 100 + known.RUN_SECONDS for n in counts)
    assert (
        "- Wall time (first trial start to last trial end of each of the 2 `ohem-tune run` "
        f"invocations, summed): {total // 60} min {total % 60:02d} s"
    ) in page
    joined = pd.read_parquet(folder / "runs.parquet")
    assert set(joined["run_id"]) >= set(pd.read_parquet(earlier / "runs.parquet")["run_id"])
    curves = pd.read_parquet(folder / "eval_history.parquet")
    finished = joined.loc[joined["status"] == "FINISHED", "run_id"]
    assert set(curves["run_id"]) == set(finished)  # both sources' curves, superseded runs too
    assert not curves.duplicated(["run_id", "step"]).any()


def test_a_differing_overlap_is_a_warning_naming_the_trial(
    split: tuple[Path, str], spec_path: Path, tmp_path: Path
) -> None:
    earlier, later = split

    def edit(runs: pd.DataFrame) -> None:
        row = (runs["variant"] == "frcn_vgg16") & (runs["seed"] == 1)
        runs.loc[row, "metrics.final/mAP"] += 0.001  # as another CPU model would
        runs["metrics.final/sec_per_iter"] *= 1.1  # times differ from run to run: not compared

    edited = _copy(earlier, tmp_path / "edited", edit)
    result = build_report(str(spec_path), later, out=tmp_path / "out", add_runs=[edited])
    differ = [w for w in result.warnings if "differ in final results" in w]
    assert differ == [
        "1 of the 4 trials finished both in the store and in the added runs differ in final "
        "results (another CPU model or torch build?); of each, the later run is shown: frcn_vgg16 "
        "seed 1 "
        "(final/mAP)"
    ]


def test_missing_history_is_a_warning_and_bad_folders_are_one_line_errors(
    split: tuple[Path, str], spec_path: Path, tmp_path: Path
) -> None:
    earlier, later = split
    no_curves = _copy(earlier, tmp_path / "no_curves")
    (no_curves / "eval_history.parquet").unlink()
    result = build_report(str(spec_path), later, out=tmp_path / "nc", add_runs=[no_curves])
    finished = sum(1 for r in known.RUNS if r.seed <= 1 and r.status == "FINISHED")
    missing = [w for w in result.warnings if "missing" in w]
    assert missing == [
        f"{no_curves / 'eval_history.parquet'}: missing; its {finished} finished runs have no "
        "mAP curves (figures, equal-time column)"
    ]
    spec_without = known.write_spec(tmp_path / "no_ablation.yaml", tables=["cost"])
    quiet = build_report(str(spec_without), later, out=tmp_path / "q", add_runs=[no_curves])
    assert not [w for w in quiet.warnings if "missing" in w]  # no table needs the curves
    with pytest.raises(TrackingError, match=r"empty/runs.parquet: no such file; pass a folder"):
        build_report(str(spec_path), later, out=tmp_path / "o", add_runs=[tmp_path / "empty"])
    broken = tmp_path / "broken"
    broken.mkdir()
    pd.DataFrame({"run_id": ["x"]}).to_parquet(broken / "runs.parquet")
    with pytest.raises(TrackingError, match=r"runs.parquet: column variant missing: not written"):
        read_report_folder(broken)
    (broken / "runs.parquet").write_text("not parquet")
    with pytest.raises(TrackingError, match=r"runs.parquet: not a readable Parquet file"):
        read_report_folder(broken)


def test_a_report_folder_alone_rebuilds_its_report(
    built: ReportResult, spec_path: Path, tmp_path: Path
) -> None:
    """`--no-store --add-runs FOLDER`: the Parquet record alone gives the same tables and the
    same invocation time (invocations.parquet), with no MLflow store to read."""
    assert (built.out_dir / "invocations.parquet").is_file()
    again = build_report(
        str(spec_path), "sqlite:///nowhere.db", out=tmp_path, add_runs=[built.out_dir],
        no_store=True,
    )  # fmt: skip
    for table in ("claims", "ablation", "cost", "per_class", "coco", "multiscale_bbox"):
        name = f"table_{table}.md"
        if (built.out_dir / name).is_file():
            assert (again.out_dir / name).read_text() == (built.out_dir / name).read_text(), name
    page, first = ((d / "README.md").read_text() for d in (again.out_dir, built.out_dir))
    calls = [line for line in first.splitlines() if line.startswith("- `ohem-tune run`")]
    assert calls and calls[0] in page
    assert "not recorded there" not in page
    assert f"from the Parquet record of `{known.EXPERIMENT}`" in page
    with pytest.raises(ConfigError, match="--no-store reads only the --add-runs folders"):
        build_report(str(spec_path), out=tmp_path, no_store=True)


def test_in_place_rebuilds_keep_the_record_and_do_not_double_it(
    built: ReportResult, spec_path: Path, tmp_path: Path
) -> None:
    """A folder rebuilt from itself without the parquet format keeps its Parquet files; a folder
    given twice adds its histories once; a runs.parquet from before later tag columns loads."""
    folder = _copy(built.out_dir, tmp_path / known.EXPERIMENT)
    record = {p.name: p.read_bytes() for p in folder.glob("*.parquet")}
    build_report(str(spec_path), out=tmp_path, formats="md", add_runs=[folder], no_store=True)
    assert {p.name: p.read_bytes() for p in folder.glob("*.parquet")} == record
    twice = build_report(
        str(spec_path), out=tmp_path / "twice", add_runs=[folder, folder], no_store=True
    )
    for name in ("eval_history.parquet", "loss_history.parquet"):
        got = pd.read_parquet(twice.out_dir / name)
        assert len(got) == len(pd.read_parquet(folder / name)), name
    old = tmp_path / "old"
    shutil.copytree(built.out_dir, old)
    runs = pd.read_parquet(old / "runs.parquet").drop(columns=["cpu", "torch_build"])
    runs.to_parquet(old / "runs.parquet", index=False)
    again = build_report(str(spec_path), out=tmp_path / "again", add_runs=[old], no_store=True)
    name = "table_claims.md"
    assert (again.out_dir / name).read_text() == (built.out_dir / name).read_text()
