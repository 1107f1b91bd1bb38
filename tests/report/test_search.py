"""The search table and figure from a real SQLite store filled with known Optuna trials.

Trials (start order t01..t05; mAP as logged, in [0, 1]; eval/mAP reported every 100 iterations):
- t01 heuristic lr 3e-3 bg_lo 0.1: FINISHED, eval 0.30 / 0.45 / 0.50, final/mAP 0.52.
- t02 ohem lr 1e-2 nms 0.7: FINISHED, eval 0.35 / 0.55 / 0.60, final/mAP 0.61; an earlier FAILED
  run of the same trial (a retry) is superseded by it.
- t03 ohem lr 5e-2 nms 0.5: PRUNED after 0.20 at iteration 100.
- t04 heuristic lr 1.23456e-3 bg_lo 0.2: PRUNED after 0.30 / 0.40 at iteration 200.
- t05 ohem lr 1e-1 nms 0.9: FAILED (non-finite loss), no evaluation.
"""

from __future__ import annotations

import json

import pytest

from ohem_tune import tracking_keys as K
from ohem_tune.report import build_report

EXPERIMENT = "hpo_test"
T0 = 1_780_000_000_000
TRIALS = [
    # (trial id, point, status, eval history, final mAP, start offset in minutes, error)
    ("a1", {"sampler.name": "heuristic", "solver.lr": 0.003, "sampler.bg_lo": 0.1},
     "FINISHED", [0.30, 0.45, 0.50], 0.52, 1, None),
    ("b2", {"sampler.name": "ohem", "solver.lr": 0.01, "sampler.nms_thresh": 0.7},
     "FAILED", [], None, 0, "RuntimeError: worker died"),  # the retry below supersedes it
    ("b2", {"sampler.name": "ohem", "solver.lr": 0.01, "sampler.nms_thresh": 0.7},
     "FINISHED", [0.35, 0.55, 0.60], 0.61, 2, None),
    ("c3", {"sampler.name": "ohem", "solver.lr": 0.05, "sampler.nms_thresh": 0.5},
     "PRUNED", [0.20], None, 3, None),
    ("d4", {"sampler.name": "heuristic", "solver.lr": 0.00123456, "sampler.bg_lo": 0.2},
     "PRUNED", [0.30, 0.40], None, 4, None),
    ("e5", {"sampler.name": "ohem", "solver.lr": 0.1, "sampler.nms_thresh": 0.9},
     "FAILED", [], None, 5, "TrainingError: non-finite loss at iteration 37\nTraceback ..."),
]  # fmt: skip
MLFLOW_STATUS = {"FINISHED": "FINISHED", "PRUNED": "KILLED", "FAILED": "FAILED"}


# A search that selected on val: the same trials with eval/val/mAP histories and final/val/mAP;
# each finished trial's test mAP (final/mAP) ranks them the other way round.
VAL_EXPERIMENT = "hpo_val_test"
TEST_MAP = {"a1": 0.58, "b2": 0.55}


def fill(uri: str, val: bool = False) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(VAL_EXPERIMENT if val else EXPERIMENT)
    history_key, final_key = (K.VAL_MAP, K.FINAL_VAL_MAP) if val else (K.MAP, K.FINAL_MAP)
    for trial_id, point, status, history, final, minute, error in TRIALS:
        start = T0 + minute * 60_000
        tags = {
            K.TAG_ROLE: "trial",
            K.TAG_VARIANT: "hpo",
            K.TAG_SEED: "0",
            K.TAG_STATUS: status,
            K.TAG_TRIAL_ID: f"{trial_id}-s0",
            K.TAG_CONFIG_HASH: trial_id,
            K.TAG_SEARCH_POINT: json.dumps(point, sort_keys=True),
            K.TAG_DEVICE: "cpu",
        }
        if error:
            tags[K.TAG_ERROR] = error
        run = client.create_run(exp_id, start_time=start, run_name=f"hpo[{trial_id}]-s0")
        metrics = [Metric(history_key, v, start, 100 * (i + 1)) for i, v in enumerate(history)]
        if final is not None:
            metrics.append(Metric(final_key, final, start, 300))
            if val:
                metrics.append(Metric(K.FINAL_MAP, TEST_MAP[trial_id], start, 300))
        params = {"train.max_iter": "300", **{k: str(v) for k, v in point.items()}}
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.set_terminated(run.info.run_id, MLFLOW_STATUS[status], end_time=start + 50_000)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hpo_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    fill(uri)
    return build_report(EXPERIMENT, uri, out=root / "reports")


def _search(report):
    return next(t for t in report.tables if t.key == "search")


def test_trials_ranked_finished_then_pruned_by_iteration_then_failed(report) -> None:
    table = _search(report)
    heads = [[c.text for c in row[:5]] for row in table.rows]
    assert heads == [
        ["1", "t02", "finished", "300", "61.0"],  # final/mAP, not the last periodic eval
        ["2", "t01", "finished", "300", "52.0"],
        ["", "t04", "pruned", "200", "40.0"],
        ["", "t03", "pruned", "100", "20.0"],
        ["", "t05", "failed", "—", "—"],
    ]
    assert [c.header for c in table.columns[5:]] == [
        "sampler.bg_lo",
        "sampler.name",
        "sampler.nms_thresh",
        "solver.lr",
    ]  # fmt: skip  (no spec: sorted; with a spec: the spec's order)
    assert [c.text for c in table.rows[0][5:]] == ["—", "ohem", "0.7", "1e-2"]
    assert [c.text for c in table.rows[2][5:]] == ["0.2", "heuristic", "—", "1.23e-3"]


def test_only_the_best_finished_trial_is_bold_and_failures_are_noted(report) -> None:
    table = _search(report)
    bold = [(row[1].text, j) for row in table.rows for j, c in enumerate(row) if c.bold]
    assert bold == [("t02", 4)]
    notes = " ".join(table.notes)
    assert "5 trials: 2 finished, 2 pruned, 1 failed" in notes
    assert "t05 failed: TrainingError: non-finite loss at iteration 37" in notes
    assert "Traceback" not in notes  # first line of the error only
    assert not any("configurations" in w for w in report.warnings)  # search points are expected


def test_markdown_and_figure_are_written(report) -> None:
    out = report.out_dir
    markdown = (out / "table_search.md").read_text()
    assert "| 1 | t02 | finished | 300 | **61.0** | — | ohem | 0.7 | 1e-2 |" in markdown
    assert (out / "table_search.tex").read_text().count(r"\midrule") >= 2  # blocks by status
    png = out / "fig_search.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    index = (out / "README.md").read_text()
    assert "fig_search.png" in index
    assert "5 trial runs (2 finished, 2 pruned, 1 failed)" in index  # each search trial once


def test_a_search_on_test_says_so(report) -> None:
    table = _search(report)
    assert table.columns[4].header == "test mAP (selection) (%)"
    assert any("Selection used the test split" in n for n in table.notes)


@pytest.fixture(scope="module")
def val_report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hpo_val_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    fill(uri, val=True)
    return build_report(VAL_EXPERIMENT, uri, out=root / "reports")


def test_val_search_ranks_on_val_and_shows_test_beside_it(val_report) -> None:
    table = _search(val_report)
    headers = [c.header for c in table.columns[:6]]
    assert headers == ["#", "trial", "status", "iter", "val mAP (selection) (%)", "test mAP (%)"]
    heads = [[c.text for c in row[:6]] for row in table.rows]
    assert heads == [
        ["1", "t02", "finished", "300", "61.0", "55.0"],  # ranked by val, although t01's test
        ["2", "t01", "finished", "300", "52.0", "58.0"],  # mAP is higher: test selects nothing
        ["", "t04", "pruned", "200", "40.0", "—"],
        ["", "t03", "pruned", "100", "20.0", "—"],
        ["", "t05", "failed", "—", "—", "—"],
    ]
    bold = [(row[1].text, j) for row in table.rows for j, c in enumerate(row) if c.bold]
    assert bold == [("t02", 4)]  # the selection column only
    notes = " ".join(table.notes)
    assert "Selection used the val split (dataset.val_split;" in notes
    assert "test mAP (final/mAP)" in notes
    markdown = (val_report.out_dir / "table_search.md").read_text()
    assert "val mAP (selection) (%) | test mAP (%)" in markdown


def test_search_table_says_what_was_measured(report) -> None:
    from ohem_tune.report.data import NO_PROTOCOL

    line = (
        f"Measured: dataset not recorded, split not recorded; test protocol: {NO_PROTOCOL}; "
        "iteration budget: 300 iterations (train.max_iter); profile: not recorded."
    )
    assert _search(report).notes.count(line) == 1


def test_search_trials_of_mixed_budgets_are_named_in_the_note(report) -> None:
    import pandas as pd

    from ohem_tune.report.data import ReportData
    from ohem_tune.report.layout import layout_from_runs
    from ohem_tune.report.search import search_table, search_trials

    runs = report.runs.copy()
    runs.loc[runs["config_hash"] == "d4", "params.train.max_iter"] = "200"  # t04
    runs.loc[runs["config_hash"] == "e5", "params.train.max_iter"] = "50"  # t05 failed: unused
    data = ReportData(layout_from_runs(EXPERIMENT, runs), runs)
    progress = pd.DataFrame({"run_id": [], "step": [], "value": []})
    table = search_table(data, search_trials(data, progress))
    measured = next(n for n in table.notes if n.startswith("Measured: "))
    assert "iteration budget: MIXED (2, listed below)" in measured
    note = next(n for n in table.notes if n.startswith("Iteration budgets (MIXED, 2): "))
    assert "200 (`t04`)" in note and "`t05`" not in note and "50" not in note
    assert any(w.startswith("MIXED ITERATION BUDGETS in table 'search'") for w in table.warnings)
