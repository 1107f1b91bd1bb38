"""`ohem-tune run` end to end on a real local Ray (2 CPUs, 2 logical GPUs) and a SQLite MLflow
store, with the real Trainer on the tiny synthetic preset."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from rich.console import Console

from ohem_tune import tracking_keys as tk
from ohem_tune.errors import ConfigError
from ohem_tune.orchestration.cluster import WORKER_ENV
from ohem_tune.orchestration.driver import run_plan
from ohem_tune.orchestration.plan import make_plan
from ohem_tune.orchestration.summary import print_summary
from tests.orchestration.local_ray import local_ray_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module: 2 CPUs, 2 logical GPUs, session files in a temp dir."""
    import ray

    tmp = tempfile.mkdtemp(prefix="ot", dir="/tmp")  # short: Ray's socket paths are length-capped
    with local_ray_env(tmp):  # the CLI subprocesses below join without a token
        ray.init(
            num_cpus=2,
            num_gpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": WORKER_ENV},
        )
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)


def spec_file(tmp_path: Path, **changes) -> Path:
    """The smoke spec with top-level changes (variants, hooks, search, ...)."""
    tree = yaml.safe_load(SMOKE.read_text())
    tree.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def plan_for(spec: Path, tmp_path: Path, cache: Path, *overrides: str, **kw):
    return make_plan(
        spec,
        overrides=[f"dataset.synthetic.cache_dir={cache}", *overrides],
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        storage_path=tmp_path / "results",
        **kw,
    )


def trial_runs(tmp_path: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], f"tags.`{tk.TAG_ROLE}` = 'trial'")


def test_smoke_spec_end_to_end_one_finished_run_per_trial(ray_cluster, tmp_path, dataset_cache):
    plan = plan_for(SMOKE, tmp_path, dataset_cache)
    summary = run_plan(plan)
    assert summary.complete and summary.count("FINISHED") == 2
    assert 0 < summary.first_iteration_seconds < summary.wall_seconds
    printed = Console(record=True, width=200)
    print_summary(summary, printed)
    assert f"first trial iteration {summary.first_iteration_seconds:.1f} s" in printed.export_text()
    # one copy of each checkpoint, the trial's own: Tune's storage on the same disk holds none
    assert list((plan.exp_dir / "trials").rglob("model_*.pt"))
    assert (plan.exp_dir / "tune").is_dir() and not list((plan.exp_dir / "tune").rglob("*.pt"))

    client = MlflowClient(plan.tracking_uri)
    runs = trial_runs(tmp_path, "smoke")
    assert sorted((r.data.tags[tk.TAG_VARIANT], r.data.tags[tk.TAG_SEED]) for r in runs) == [
        ("frcn", "0"),
        ("ohem", "0"),
    ]
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[tk.TAG_ROLE] == "parent"
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED" and tags[tk.TAG_STATUS] == "FINISHED"
        assert tags["mlflow.parentRunId"] == summary.parent_run_id
        assert tags[tk.TAG_DEVICE] == "cpu" and tags[tk.TAG_HOST] and tags[tk.TAG_GIT_SHA]
        assert tags[tk.TAG_SPEC_HASH] and tags[tk.TAG_VERSION]
        # the test protocol: every test.* field is a param, and one tag states it
        for key in ("metric", "nms_thresh", "max_per_image", "detections_per", "score_thresh"):
            assert f"test.{key}" in params
        assert params["test.detections_per"] == "image" and params["test.max_images"] == "None"
        assert tags[tk.TAG_TEST_PROTOCOL] == (
            f"{params['test.metric']} · NMS {float(params['test.nms_thresh']):g} · "
            f"≤{params['test.max_per_image']} dets/image · "
            f"score > {float(params['test.score_thresh']):g} · {params['dataset.test_split']} split"
        )
        assert tags[tk.TAG_TRIAL_ID] == f"{tags[tk.TAG_CONFIG_HASH]}-s0"
        assert params["sampler.name"] in ("heuristic", "ohem") and params["train.max_iter"] == "20"
        assert 0.0 <= metrics[tk.FINAL_MAP] <= 1.0
        assert metrics[tk.FINAL_SEC_PER_ITER] > 0 and metrics[tk.FINAL_PEAK_MEM_GB] > 0
        assert any(k.startswith(tk.FINAL_AP_PREFIX) for k in metrics)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, tk.LOSS)]
        assert steps == [5, 10, 15, 20]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"resolved_config.yaml", "metrics.parquet"} <= artifacts

    # The same command again: nothing re-runs, still exactly one run per trial.
    again = run_plan(plan_for(SMOKE, tmp_path, dataset_cache))
    assert again.already_finished == 2 and again.outcomes == []
    assert len(trial_runs(tmp_path, "smoke")) == 2

    # A changed spec is refused before anything starts, saying what changed.
    with pytest.raises(ConfigError, match=r"spec changed.*solver\.lr 0\.01 -> 0\.02"):
        run_plan(plan_for(SMOKE, tmp_path, dataset_cache, "solver.lr=0.02"))


def test_failing_trial_is_retried_and_non_finite_loss_fails_only_its_trial(
    ray_cluster, tmp_path, dataset_cache
):
    variants = yaml.safe_load(SMOKE.read_text())["variants"]
    variants.append(
        {
            "name": "diverge",
            "set": {"sampler.name": "heuristic", "solver.lr": 10.0, "solver.weight_decay": 1.0e8},
        }
    )
    spec = spec_file(
        tmp_path, variants=variants, hooks=["tests.orchestration.hooks:FailOnceForOhem"]
    )
    plan = plan_for(spec, tmp_path, dataset_cache)
    summary = run_plan(plan)

    status = {o.variant: o.status for o in summary.outcomes}
    assert status == {"frcn": "FINISHED", "ohem": "FINISHED", "diverge": "FAILED"}
    runs = trial_runs(tmp_path, "smoke")
    assert len(runs) == 3  # the retry reused the OHEM trial's run
    diverged = next(r for r in runs if r.data.tags[tk.TAG_VARIANT] == "diverge")
    assert diverged.info.status == "FAILED"
    assert "non-finite loss" in diverged.data.tags[tk.TAG_ERROR]
    ohem = next(o for o in summary.outcomes if o.variant == "ohem")
    trial_dir = plan.exp_dir / "trials" / ohem.trial_id
    assert (trial_dir / "failed_once").is_file()
    # The retry resumed from the checkpoint at iteration 10, not from scratch.
    assert (trial_dir / "attempt_starts.txt").read_text().split() == ["0", "10"]


def test_logical_gpus_pack_two_trials_per_gpu(ray_cluster, tmp_path):
    from ray import tune

    def probe(config):
        import ray

        start = time.time()
        time.sleep(3)
        tune.report(
            {
                "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
                "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                "start": start,
                "end": time.time(),
            }
        )

    tuner = tune.Tuner(
        tune.with_resources(probe, {"cpu": 0.5, "gpu": 0.5}),
        param_space={"i": tune.grid_search([0, 1, 2, 3])},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "gpu"), verbose=0),
    )
    results = [r.metrics for r in tuner.fit()]
    assert len(results) == 4
    ids = sorted(r["gpu_ids"] for r in results)
    assert ids == ["0", "0", "1", "1"]  # one logical GPU each, two trials per GPU
    assert all(r["cuda_visible"] == r["gpu_ids"] for r in results)
    latest_start = max(r["start"] for r in results)
    assert all(r["end"] > latest_start for r in results)  # all four ran at the same time


def test_a_trial_given_a_logical_gpu_without_cuda_fails_at_once(ray_cluster, tmp_path,
                                                                dataset_cache):  # fmt: skip
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the no-CUDA path")
    plan = plan_for(SMOKE, tmp_path, dataset_cache, only=["frcn"], resources=["gpu=0.5"])
    started = time.time()
    summary = run_plan(plan)
    (outcome,) = summary.outcomes
    assert outcome.status == "FAILED"
    assert "given GPU" in outcome.error and "CUDA is unavailable" in outcome.error
    assert time.time() - started < 120  # no training happened on the CPU behind the GPU's back
    (run,) = trial_runs(tmp_path, "smoke")
    assert tk.FINAL_MAP not in run.data.metrics

    # train.device: cpu is the explicit opt-out (logical GPUs, CPU on purpose).
    opted = plan_for(SMOKE, tmp_path / "opt", dataset_cache, "train.device=cpu", only=["frcn"],
                     resources=["gpu=0.5"])  # fmt: skip
    assert run_plan(opted).count("FINISHED") == 1
    (cpu_run,) = trial_runs(tmp_path / "opt", "smoke")
    assert cpu_run.data.tags[tk.TAG_GPU_MEMORY_CAP] == "none"  # a CPU trial caps nothing


def test_trials_no_node_can_hold_are_refused_not_left_pending(ray_cluster, tmp_path,
                                                               dataset_cache):  # fmt: skip
    # Ray Tune would leave them PENDING for ever (it only logs a warning every 60 s)
    for asked, offered in (
        ("cpu=3,gpu=1", "at most 2 CPUs and 2 GPUs"),
        ("cpu=8", "at most 2 CPUs"),
    ):
        plan = plan_for(SMOKE, tmp_path / asked, dataset_cache, only=["frcn"], resources=[asked])
        started = time.time()
        with pytest.raises(ConfigError, match="no trial could start") as err:
            run_plan(plan)
        assert time.time() - started < 60
        assert offered in str(err.value) and "\n" not in str(err.value)
        assert "--resources cpu=1,gpu=0" in str(err.value)
        assert trial_runs(tmp_path / asked, "smoke") == []  # nothing started, nothing logged


def test_optuna_with_asha_prunes_weak_trials(ray_cluster, tmp_path, dataset_cache):
    spec = spec_file(
        tmp_path,
        variants=[
            {
                "name": "hpo",
                "set": {"train.max_iter": 40, "train.eval_period": 10, "train.eval_split": "val"},
            }
        ],
        search={
            "num_samples": 6,
            "metric": "train/loss",
            "mode": "min",
            "params": {
                "solver.lr": {"type": "float", "low": 1.0e-4, "high": 0.05, "log": True},
                "sampler.name": {"type": "categorical", "choices": ["heuristic", "ohem"]},
                "sampler.bg_lo": {
                    "type": "float",
                    "low": 0.0,
                    "high": 0.3,
                    "when": {"sampler.name": "heuristic"},
                },
            },
        },  # fmt: skip
        scheduler={
            "type": "asha",
            "metric": "train/loss",
            "mode": "min",
            "grace_period": 10,
            "reduction_factor": 3,
        },  # fmt: skip
    )
    plan = plan_for(spec, tmp_path, dataset_cache, "test.max_images=4")
    summary = run_plan(plan)
    runs = trial_runs(tmp_path, "smoke")
    statuses = [r.data.tags[tk.TAG_STATUS] for r in runs]
    assert len(runs) == 6
    assert statuses.count("PRUNED") >= 1
    assert statuses.count("FINISHED") >= 1
    assert all(r.info.status != "RUNNING" for r in runs)
    pruned = [r for r in runs if r.data.tags[tk.TAG_STATUS] == "PRUNED"]
    assert all(r.info.status == "KILLED" for r in pruned)
    assert summary.count("PRUNED") == statuses.count("PRUNED")
    # a stopped trial's compute still counts toward slot utilisation
    stopped = [o for o in summary.outcomes if o.status == "PRUNED"]
    assert all(o.seconds and o.seconds > 0 and o.cpu_seconds for o in stopped)
    # a search trial is named by its sampled values, as its MLflow run is
    assert all(o.name.startswith("hpo[") and "lr=" in o.name for o in summary.outcomes)
    lrs = {r.data.params["solver.lr"] for r in runs}
    assert len(lrs) == 6  # Optuna sampled distinct points
    # evaluations ran on the val split; only a finished trial is measured on test, once
    evaluated = [r for r in runs if r.data.tags[tk.TAG_STATUS] in ("FINISHED", "PRUNED")]
    assert all(tk.VAL_MAP in r.data.metrics for r in evaluated)
    assert all(tk.MAP not in r.data.metrics for r in pruned)
    for run in (r for r in runs if r.data.tags[tk.TAG_STATUS] == "FINISHED"):
        assert {tk.FINAL_VAL_MAP, tk.FINAL_MAP} <= set(run.data.metrics)


def test_driver_killed_mid_run_then_resumed_has_no_duplicate_or_missing_run(
    ray_cluster, tmp_path, dataset_cache
):
    variants = [
        # v0 is short and the rest long, so one trial is done while another is mid-way even
        # on a quiet machine where a 60-iteration trial takes a few seconds.
        {
            "name": f"v{i}",
            "set": {"solver.lr": 0.01 + 0.001 * i, "train.max_iter": 60 if i == 0 else 300},
        }
        for i in range(4)
    ]
    spec = spec_file(tmp_path, variants=variants, resources={"cpu": 1, "max_concurrent": 2})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cmd = [
        str(Path(sys.executable).parent / "ohem-tune"), "run", str(spec),
        "--set", f"dataset.synthetic.cache_dir={dataset_cache}",
        "--tracking-uri", uri, "--storage-path", str(tmp_path / "results"),
        "--address", ray_cluster,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # kill once one trial finished and another is mid-way
            time.sleep(0.25)
            if proc.poll() is not None:
                break
            done, mid = _progress(tmp_path / "mlflow.db")
            if done and mid:
                break
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    interrupted = {r.data.tags[tk.TAG_TRIAL_ID]: r.info.run_id for r in _runs_or_empty(uri)
                   if r.info.status == "RUNNING"}  # fmt: skip
    assert interrupted

    out = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "finished earlier" in out.stdout
    runs = _runs_or_empty(uri)
    by_trial = {}
    for run in runs:
        by_trial.setdefault(run.data.tags[tk.TAG_TRIAL_ID], []).append(run)
    assert len(by_trial) == 4 and all(len(v) == 1 for v in by_trial.values())
    assert all(v[0].info.status == "FINISHED" for v in by_trial.values())
    for trial_id, run_id in interrupted.items():  # the interrupted runs were continued in place
        assert by_trial[trial_id][0].info.run_id == run_id


def _runs_or_empty(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("smoke")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], f"tags.`{tk.TAG_ROLE}` = 'trial'")


def _progress(db: Path) -> tuple[int, int]:
    """(finished trial runs, running ones past iteration 20), read with plain sqlite3 so that
    polling never races the driver's first-time creation of the MLflow schema."""
    import sqlite3

    if not db.is_file():
        return 0, 0
    trial = f"SELECT run_uuid FROM tags WHERE key = '{tk.TAG_ROLE}' AND value = 'trial'"
    try:
        with sqlite3.connect(db, timeout=5) as con:
            done = con.execute(
                f"SELECT count(*) FROM runs WHERE status = 'FINISHED' AND run_uuid IN ({trial})"
            ).fetchone()[0]
            mid = con.execute(
                f"SELECT count(*) FROM runs r WHERE r.status = 'RUNNING' AND r.run_uuid IN "
                f"({trial}) AND (SELECT max(step) FROM metrics m WHERE m.run_uuid = r.run_uuid "
                f"AND m.key = '{tk.LOSS}') >= 20"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0, 0
    return done, mid
