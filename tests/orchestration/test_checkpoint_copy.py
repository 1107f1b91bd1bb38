"""A checkpoint the trainer wrote reaches Tune's storage with one copy, not two.

TuneMlflowHook hands Tune a folder holding a hard link to the trainer's checkpoint; Tune then
copies the folder to its storage. The folder used to be made in the system temp dir: on another
filesystem than the trial's (/tmp vs the shared storage) the link failed and the file was copied
there first. Here the trial's temp dir is on another filesystem (tmpfs) than its out dir, and the
trial counts the bytes its process writes while reporting the checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ohem_tune.orchestration import tracking
from ohem_tune.orchestration.cluster import WORKER_ENV
from tests.orchestration.local_ray import local_ray_env

pytestmark = pytest.mark.slow

SIZE = 32 * 1024**2
SHM = Path("/dev/shm")


def test_a_checkpoint_is_copied_once_into_tune_storage(tmp_path):
    import ray
    from ray import tune

    from ohem_tune.orchestration.trainable import TrialContext

    def written_bytes() -> int:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
        raise AssertionError("no wchar in /proc/self/io")

    def trial(config: dict, ctx) -> None:
        from ray import tune

        from ohem_tune.orchestration.trainable import TuneMlflowHook

        out = Path(config["out_dir"])
        (out / "checkpoints").mkdir(parents=True)
        ckpt = out / "checkpoints" / "model_0000010.pt"
        ckpt.write_bytes(os.urandom(SIZE))
        run = tracking.TrialRun.open(ctx.tracking_uri, ctx.experiment_id, "t0", "t0", {}, None)
        hook = TuneMlflowHook(run, ctx, max_iter=20, trial_id="t0")
        hook.on_checkpoint(10, ckpt)
        before = written_bytes()
        hook.report(10)
        written = written_bytes() - before
        tune.report({"written": written, "tmp_dev": os.stat(tempfile.gettempdir()).st_dev})
        run.end(tracking.STATUS_FINISHED, None)

    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a temp dir on another filesystem than the test's tmp_path")
    trial_tmp = Path(tempfile.mkdtemp(prefix="ohem_ct_", dir=SHM))
    ray_tmp = tempfile.mkdtemp(prefix="oc", dir="/tmp")  # Ray's socket paths are length-capped
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.check_reachable(uri)
    ctx = TrialContext(
        tracking_uri=uri,
        experiment_id=tracking.ensure_experiment(uri, "copies"),
        parent_run_id=None,
        trials_dir=str(tmp_path / "trials"),
        payloads=[],
    )
    with local_ray_env(ray_tmp):
        ray.init(
            num_cpus=1,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {**WORKER_ENV, "TMPDIR": str(trial_tmp)}},
        )
        try:
            grid = tune.Tuner(
                tune.with_parameters(trial, ctx=ctx),
                param_space={"out_dir": str(tmp_path / "trials" / "t0")},
                run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0),
            ).fit()
        finally:
            ray.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)
            leftovers = list(trial_tmp.iterdir())
            shutil.rmtree(trial_tmp, ignore_errors=True)
    result = grid[0]
    assert result.error is None, result.error
    assert result.metrics["tmp_dev"] == os.stat(SHM).st_dev  # the trial's temp dir was on tmpfs
    persisted = list((tmp_path / "tune").rglob("model_0000010.pt"))
    assert len(persisted) == 1 and persisted[0].stat().st_size == SIZE
    assert (persisted[0].parent / "last").read_text().strip() == "model_0000010.pt"
    # one copy (Tune's, into its storage) plus a few KB of Ray bookkeeping; two copies are 2 x SIZE
    assert SIZE <= result.metrics["written"] < 1.25 * SIZE, result.metrics["written"]
    assert not leftovers and not list((tmp_path / "trials" / "t0").glob("ohem_ckpt_*"))
