"""The MLflow layer on a real SQLite store: URIs, one run per trial, reuse on resume, statuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from ohem_tune import tracking_keys as tk
from ohem_tune.errors import ConfigError, TrackingError
from ohem_tune.orchestration import resume, tracking
from ohem_tune.spec import build_spec


def test_tracking_uri_resolution(tmp_path):
    assert (
        tracking.resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    )
    rel = tracking.resolve_tracking_uri("sqlite:///runs/x.db", tmp_path)
    assert rel == f"sqlite:///{tmp_path.resolve()}/runs/x.db"
    assert tracking.resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert tracking.resolve_tracking_uri("store.db", tmp_path).endswith(f"{tmp_path.name}/store.db")
    assert tracking.resolve_tracking_uri("http://h:5000", tmp_path) == "http://h:5000"
    assert tracking.is_local_store("sqlite:////a.db") and not tracking.is_local_store("http://h")


def test_unreachable_stores_fail_early_with_the_fix(tmp_path):
    with pytest.raises(TrackingError, match="does not exist"):
        tracking.check_reachable(f"sqlite:///{tmp_path}/missing/dir/m.db")
    with pytest.raises(TrackingError, match="cannot reach the MLflow server.*mlflow server"):
        tracking.check_reachable("http://127.0.0.1:9", timeout_s=2)


@pytest.fixture()
def store(tmp_path) -> tuple[str, str]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return uri, tracking.ensure_experiment(uri, "exp")


def test_trial_run_is_reused_until_finished(store):
    uri, exp = store
    tags = {tk.TAG_ROLE: "trial", tk.TAG_VARIANT: "a"}
    first = tracking.TrialRun.open(uri, exp, "h-s0", "a-s0", {**tags, tk.TAG_TRIAL_ID: "h-s0"})
    first.log_params({"solver.lr": 0.01, "input.scales": [600]})
    first.log_metrics({tk.LOSS: 1.0, "x": float("nan"), "s": "text"}, step=10)
    first.end(tracking.STATUS_FAILED, "RuntimeError: boom")

    again = tracking.TrialRun.open(uri, exp, "h-s0", "a-s0", {**tags, tk.TAG_TRIAL_ID: "h-s0"})
    assert again.run_id == first.run_id and again.resumed
    assert again.already_logged(tk.LOSS, 10) and not again.already_logged(tk.LOSS, 11)
    again.log_params({"solver.lr": 0.01, "input.scales": [600]})  # same keys: skipped, no error
    again.log_metrics({tk.LOSS: 0.5}, step=20)
    again.end(tracking.STATUS_FINISHED)

    client = MlflowClient(uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tk.TAG_STATUS] == "FINISHED"
    assert run.data.params == {"solver.lr": "0.01", "input.scales": "[600]"}
    assert [m.step for m in client.get_metric_history(first.run_id, tk.LOSS)] == [10, 20]
    assert "x" not in run.data.metrics and "s" not in run.data.metrics
    runs = tracking.trial_runs(uri, exp)
    assert list(runs) == ["h-s0"] and len(runs["h-s0"]) == 1
    assert tracking.finished_trial_ids(runs) == {"h-s0"}
    assert tracking.TrialRun.finished_metrics(uri, exp, "h-s0") == {tk.LOSS: 0.5}


def test_pruned_is_killed_with_a_status_tag(store):
    uri, exp = store
    run = tracking.TrialRun.open(
        uri, exp, "p-s0", "p", {tk.TAG_ROLE: "trial", tk.TAG_TRIAL_ID: "p-s0"}, parent_run_id=None
    )
    run.end(tracking.STATUS_PRUNED)
    got = MlflowClient(uri).get_run(run.run_id)
    assert got.info.status == "KILLED" and got.data.tags[tk.TAG_STATUS] == "PRUNED"
    assert tracking.finished_trial_ids(tracking.trial_runs(uri, exp)) == set()


def test_experiment_artifacts_live_beside_the_sqlite_store(store, tmp_path):
    uri, exp = store
    location = MlflowClient(uri).get_experiment(exp).artifact_location
    assert location == (tmp_path / "mlruns").resolve().as_uri()
    assert tracking.ensure_experiment(uri, "exp") == exp


def _manifest(tmp_path: Path, lr: float, extra_variant: bool = False) -> resume.Manifest:
    variants = [{"name": "a", "set": {"solver.lr": lr}}]
    if extra_variant:
        variants.append({"name": "b", "set": {"sampler.name": "ohem"}})
    spec = build_spec({"name": "m", "variants": variants, "seeds": 2}, tmp_path / "m.yaml")
    return resume.Manifest.build("m", "m.yaml", None, spec.expand(), {"search": None})


def test_resume_contract_refuses_a_changed_spec_naming_the_change(tmp_path):
    exp_dir = tmp_path / "exp"
    with pytest.raises(ConfigError, match="--resume: nothing to resume"):
        resume.check_or_write(exp_dir, _manifest(tmp_path, 0.01), True, "m")
    assert resume.check_or_write(exp_dir, _manifest(tmp_path, 0.01), False, "m") is False
    assert resume.check_or_write(exp_dir, _manifest(tmp_path, 0.01), True, "m") is True
    with pytest.raises(ConfigError) as info:
        resume.check_or_write(exp_dir, _manifest(tmp_path, 0.02, extra_variant=True), False, "m")
    message = str(info.value)
    assert "variant 'a': solver.lr 0.01 -> 0.02" in message
    assert "variant 'b' added" in message
    assert "--experiment m-v2" in message
