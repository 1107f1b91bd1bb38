"""Reading trial runs from a real MLflow SQLite store into the tidy table."""

from __future__ import annotations

import pandas as pd
import pytest

from ohem_tune.errors import TrackingError
from ohem_tune.report.runs import fetch_histories, fetch_runs, find_experiment, open_client
from tests.report.mlflow_store import EXPERIMENT, LOSS_STEPS, RUN_SECONDS, RUNS, loss_value


@pytest.fixture(scope="module")
def client_and_id(store: str):
    client = open_client(store)
    return client, find_experiment(client, EXPERIMENT, store)


def test_paged_read_equals_single_page(client_and_id) -> None:
    client, exp_id = client_and_id
    small_pages = fetch_runs(client, exp_id, page_size=4)  # 15 runs -> 4 pages
    one_page = fetch_runs(client, exp_id, page_size=1000)
    assert len(small_pages) == len(RUNS) == len(one_page)
    assert set(small_pages["run_id"]) == set(one_page["run_id"])
    assert small_pages["run_id"].is_unique


def test_tidy_columns_and_types(client_and_id) -> None:
    client, exp_id = client_and_id
    runs = fetch_runs(client, exp_id)
    assert runs["seed"].dtype == "Int64"
    assert runs["baseline"].dtype == bool
    assert pd.api.types.is_datetime64_any_dtype(runs["start_time"])
    assert (runs["duration_s"] == RUN_SECONDS).all()
    assert runs["params.solver.lr"].iloc[0] == "0.001"
    assert "metrics.final/mAP" in runs.columns
    # the parent run is not a trial
    assert set(runs["variant"]) == {r.variant for r in RUNS}
    statuses = runs.groupby("status").size().to_dict()
    assert statuses == {"FINISHED": 12, "FAILED": 2, "PRUNED": 1}


def test_repeated_variant_seed_keeps_latest_finished(client_and_id) -> None:
    client, exp_id = client_and_id
    runs = fetch_runs(client, exp_id)
    frcn = runs[(runs["variant"] == "frcn_vggm") & ~runs["superseded"]]
    assert sorted(frcn["seed"].tolist()) == [0, 1, 2]
    assert (frcn["status"] == "FINISHED").all()
    # the older seed-1 run logged 0.99 and the older seed-0 run failed: both superseded
    old = runs[runs["superseded"]]
    assert len(old) == 2
    assert set(old["status"]) == {"FAILED", "FINISHED"}
    assert old.loc[old["status"] == "FINISHED", "metrics.final/mAP"].item() == 0.99


def test_histories_are_read_per_step(client_and_id) -> None:
    client, exp_id = client_and_id
    runs = fetch_runs(client, exp_id)
    row = runs[(runs["variant"] == "ohem_vggm") & (runs["seed"] == 1)].iloc[0]
    hist = fetch_histories(client, [row["run_id"]], "train/loss_per_roi_all", workers=2)
    assert hist["step"].tolist() == list(LOSS_STEPS)
    assert hist["value"].tolist() == pytest.approx(
        [loss_value("ohem_vggm", 1, s) for s in LOSS_STEPS]
    )


def test_unknown_experiment_lists_existing(store: str) -> None:
    client = open_client(store)
    with pytest.raises(TrackingError, match=f"no experiment named 'nope'.*{EXPERIMENT}"):
        find_experiment(client, "nope", store)


def test_missing_sqlite_file_is_an_error_not_a_new_store(tmp_path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(TrackingError, match="no MLflow store there"):
        open_client(f"sqlite:///{missing}")
    assert not missing.exists()


def _record(run_id: str, variant: str, seed: int, config: str, status: str, start: int) -> dict:
    return {
        "run_id": run_id,
        "variant": variant,
        "variant_order": 0,
        "baseline": False,
        "paper_map": None,
        "seed": seed,
        "status": status,
        "config_hash": config,
        "start_time": start,
        "end_time": start + 10,
        "duration_s": 0.01,
        "superseded": False,
    }


def test_one_configuration_per_variant_enters_the_tables() -> None:
    from ohem_tune.report.runs import runs_frame, superseded_configs

    frame = runs_frame(
        [
            _record("old0", "a", 0, "cfgX", "FINISHED", 100),  # an earlier profile / search point
            _record("old1", "a", 1, "cfgX", "FINISHED", 200),
            _record("new0", "a", 0, "cfgY", "FINISHED", 300),
            _record("new1-ok", "a", 1, "cfgY", "FINISHED", 400),
            _record("new1-retry", "a", 1, "cfgY", "FAILED", 500),  # a later failed re-run
            _record("b0", "b", 0, "cfgZ", "FINISHED", 50),
        ]
    )
    kept = set(frame.loc[~frame["superseded"], "run_id"])
    assert kept == {"new0", "new1-ok", "b0"}
    assert superseded_configs(frame) == {"a": 2}


class _ClientWithoutSqlStore:
    """The real client seen as a tracking-server client: only the public history call."""

    def __init__(self, client) -> None:
        self.get_metric_history = client.get_metric_history


def test_bulk_and_per_run_history_reads_agree(client_and_id) -> None:
    client, exp_id = client_and_id
    runs = fetch_runs(client, exp_id)
    ids = runs.loc[runs["status"] == "FINISHED", "run_id"].tolist()
    bulk = fetch_histories(client, ids, "train/loss_per_roi_all")
    per_run = fetch_histories(_ClientWithoutSqlStore(client), ids, "train/loss_per_roi_all")
    assert len(bulk) == len(ids) * len(LOSS_STEPS)
    pd.testing.assert_frame_equal(bulk, per_run)
