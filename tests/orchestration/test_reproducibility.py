"""Same machine, same seed, same code: bit-identical metrics, also in a reused Ray worker.

A trial run alone and the same trial run second in a worker process that just trained another
trial give identical MLflow metric histories (every value at every step, timings aside), and
each run records the CPU model and torch build its numbers depend on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from ohem_tune import tracking_keys as tk
from ohem_tune.orchestration.driver import run_plan
from ohem_tune.orchestration.plan import make_plan
from tests.orchestration import test_run

SMOKE = test_run.SMOKE
ray_cluster = test_run.ray_cluster  # the same module-scoped local Ray fixture

pytestmark = pytest.mark.slow

# Wall-clock and memory figures differ run to run by nature; everything else must not.
TIMING = (
    tk.SEC_PER_ITER,
    tk.DATA_TIME,
    tk.COMPUTE_TIME,
    tk.PEAK_MEM_GB,
    tk.FINAL_SEC_PER_ITER,
    tk.FINAL_PEAK_MEM_GB,
    tk.FINAL_TRAIN_SECONDS,
)


def _spec(tmp_path: Path, name: str, order: list[str]) -> Path:
    tree = yaml.safe_load(SMOKE.read_text())
    by_name = {v["name"]: v for v in tree["variants"]}
    tree["variants"] = [by_name[n] for n in order]
    tree["hooks"] = ["tests.orchestration.hooks:RecordProcess"]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _histories(client: MlflowClient, run) -> dict[str, list[tuple[int, float]]]:
    keys = [k for k in run.data.metrics if not k.startswith(TIMING) and "time" not in k]
    keys = [k for k in keys if not k.startswith(("train/phase/", "final/phase/", "system/"))]
    keys = [k for k in keys if "peak_mem" not in k and "seconds" not in k]
    return {
        k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
        for k in sorted(keys)
    }


@pytest.mark.usefixtures("ray_cluster")
def test_a_trial_is_bit_identical_alone_and_in_a_reused_worker(tmp_path, dataset_cache):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = dict(
        overrides=[f"dataset.synthetic.cache_dir={dataset_cache}"],
        tracking_uri=uri,
        storage_path=tmp_path / "results",
    )
    alone = make_plan(
        _spec(tmp_path, "alone", ["frcn", "ohem"]), only=["frcn"], experiment="alone", **common
    )
    assert run_plan(alone, max_concurrent=1).count("FINISHED") == 1
    # OHEM first, then the same Fast R-CNN trial in the worker process OHEM just used.
    reused = make_plan(_spec(tmp_path, "reused", ["ohem", "frcn"]), experiment="reused", **common)
    assert run_plan(reused, max_concurrent=1).count("FINISHED") == 2

    processes = (reused.exp_dir / "trials" / "processes.txt").read_text().split("\n")
    pids = [line.split() for line in processes if line]
    assert [s for _, s in pids] == ["ohem", "heuristic"] and pids[0][0] == pids[1][0], pids

    client = MlflowClient(uri)
    runs = {}
    for name in ("alone", "reused"):
        exp = client.get_experiment_by_name(name)
        found = client.search_runs([exp.experiment_id], f"tags.`{tk.TAG_VARIANT}` = 'frcn'")
        assert len(found) == 1
        runs[name] = found[0]
    a, b = runs["alone"], runs["reused"]
    assert a.data.tags[tk.TAG_CONFIG_HASH] == b.data.tags[tk.TAG_CONFIG_HASH]
    for run in (a, b):
        assert run.data.tags[tk.TAG_CPU] and run.data.tags[tk.TAG_TORCH_BUILD].startswith("torch ")
    history_a, history_b = _histories(client, a), _histories(client, b)
    assert tk.FINAL_MAP in history_a and tk.LOSS in history_a
    assert history_a == history_b
