"""Where trials run and write: slots per node, the local Ray the doctor does not start, a real
Ray head joined with --address, the tracking store, shared storage and the checkpoint disk."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from ohem_tune.config import Config
from ohem_tune.doctor import exit_code
from ohem_tune.doctor.checks import run_checks
from ohem_tune.doctor.cluster import (
    checkpoint_bytes,
    checkpoints_kept,
    disk_row,
    gcs_port_problem,
    local_ray_resources,
    local_ray_row,
    slots_row,
    storage_row,
    tracking_row,
)
from ohem_tune.doctor.rows import Row
from ohem_tune.modeling import build_model
from ohem_tune.spec.schema import ResourcesSpec

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------ slots


def test_a_trial_fits_on_one_node_only():
    two_nodes = [{"CPU": 3, "GPU": 0}, {"CPU": 3, "GPU": 0}]
    row = slots_row(ResourcesSpec(cpu=2), two_nodes, "the cluster")
    assert row.status == "ok" and row.detail.startswith("2 trial(s) at once")  # not 6 // 2


def test_fractional_gpus_pack_and_max_concurrent_caps():
    node = [{"CPU": 8, "GPU": 1}]
    assert slots_row(ResourcesSpec(cpu=1, gpu=0.5), node, "x").detail.startswith("2 trial(s)")
    capped = slots_row(ResourcesSpec(cpu=1, max_concurrent=3), node, "x")
    assert capped.detail.startswith("3 trial(s) at once on x (max_concurrent 3)")


def test_trials_that_fit_nowhere_fail():
    row = slots_row(ResourcesSpec(cpu=4, gpu=1), [{"CPU": 2, "GPU": 0}], "this machine")
    assert row.status == "fail"
    assert (
        "4 CPU + 1 GPU per trial, but this machine offers at most 2 CPUs and 0 GPUs" in row.detail
    )


def test_local_ray_is_described_not_started():
    import ray

    row = local_ray_row()
    cpus, gpus = local_ray_resources()
    assert row.status == "ok" and f"with {cpus:g} CPUs, {gpus:g} GPUs" in row.detail
    assert not ray.is_initialized()


# ------------------------------------------------------------------------------ tracking, storage


def test_tracking_store_usable_or_failing_with_the_fix(tmp_path: Path):
    ok = tracking_row(f"sqlite:///{tmp_path}/mlflow.db", None)
    assert ok.status == "ok" and "a local store" in ok.detail
    gone = tracking_row(f"sqlite:///{tmp_path}/nope/mlflow.db", None)
    assert gone.status == "fail" and f"folder {tmp_path}/nope does not exist" in gone.detail
    dead = tracking_row(f"http://127.0.0.1:{free_port()}", None)
    assert dead.status == "fail" and "cannot reach the MLflow server" in dead.detail


def test_storage_is_not_probed_for_a_local_run(tmp_path: Path):
    row = storage_row(str(tmp_path), None)
    assert (row.status, row.detail) == (
        "skip",
        f"local Ray: checkpoints stay on this machine ({tmp_path})",
    )


def test_a_dead_or_malformed_address_is_named_in_seconds():
    assert "nothing answers there" in gcs_port_problem(f"127.0.0.1:{free_port()}", 5)
    assert "expected HOST:PORT" in gcs_port_problem("my-head-node")
    assert gcs_port_problem("auto") == ""


def test_an_unreachable_cluster_is_a_failed_row_not_a_hang(tmp_path: Path):
    rows = {r.check: r for r in run_checks(address=f"127.0.0.1:{free_port()}",
                                           storage_path=tmp_path)}  # fmt: skip
    assert rows["Ray"].status == "fail" and "nothing answers there" in rows["Ray"].detail
    assert rows["shared storage"].status == "skip"


# ------------------------------------------------------------------------------ disk


def test_checkpoint_size_is_weights_plus_momentum(tiny_cfg: Config):
    model = build_model(tiny_cfg, 20)
    assert checkpoint_bytes(tiny_cfg) == 8 * sum(p.numel() for p in model.parameters())


def test_checkpoints_left_per_trial(tiny_cfg: Config):
    train = tiny_cfg.train  # max_iter 20, checkpoint_period 10
    assert checkpoints_kept(tiny_cfg) == min(2, train.keep_checkpoints)
    every = tiny_cfg.model_copy(update={"train": train.model_copy(update={"keep_checkpoints": 0})})
    assert checkpoints_kept(every) == 2  # both written checkpoints; Tune keeps no copy on a disk
    end_only = tiny_cfg.model_copy(
        update={"train": train.model_copy(update={"checkpoint_period": 0})}
    )
    assert checkpoints_kept(end_only) == 1


def test_disk_fails_when_the_checkpoints_would_not_fit(tiny_cfg: Config, tmp_path: Path):
    free = shutil.disk_usage(tmp_path).free
    size = checkpoint_bytes(tiny_cfg)
    fits = disk_row(str(tmp_path / "ray_results"), [tiny_cfg])
    assert fits.status == "ok" and f"free at {tmp_path / 'ray_results'}" in fits.detail
    # keep every checkpoint of a run long enough to need more than the disk has
    iters = math.ceil(free / size) + 1
    train = tiny_cfg.train.model_copy(
        update={"max_iter": iters, "checkpoint_period": 1, "keep_checkpoints": 0}
    )
    too_big = tiny_cfg.model_copy(update={"train": train})
    row = disk_row(str(tmp_path), [too_big])
    assert row.status == "fail" and "--storage-path on a bigger disk" in row.detail
    assert disk_row("s3://bucket/prefix", [tiny_cfg]).status == "skip"


# ------------------------------------------------------------------------------ a real cluster


@pytest.fixture
def ray_head(monkeypatch: pytest.MonkeyPatch):
    """A one-node Ray cluster with token auth, in its own process group (stopped by pgid)."""
    ray_tmp = tempfile.mkdtemp(prefix="od", dir="/tmp")  # Ray's socket paths are length-capped
    token = uuid.uuid4().hex
    for key, value in {"RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "token",
                       "RAY_AUTH_TOKEN": token}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    port = free_port()
    log = Path(ray_tmp) / "head.log"
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false",
         "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", f"--memory={2**31}",
         f"--object-store-memory={2**27}", "--block"],
        env=dict(os.environ), stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 90
        while gcs_port_problem(f"127.0.0.1:{port}", 2) and time.time() < deadline:
            time.sleep(1)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(ray_tmp, ignore_errors=True)


# Joining a token-auth cluster sets process-wide Ray auth state that outlives ray.shutdown()
# (later local Rays in the same pytest process then lose their workers), so the doctor joins
# from a child process, as `ohem-tune doctor` does from its own.
_JOIN = """
import dataclasses, json, sys
import ray
from ohem_tune.doctor.checks import run_checks
spec, address, uri, storage = sys.argv[1:5]
rows = run_checks(spec, address=address, tracking_uri=uri, storage_path=storage)
print(json.dumps({"rows": [dataclasses.asdict(r) for r in rows], "joined": ray.is_initialized()}))
"""


@pytest.mark.slow
def test_doctor_joins_a_cluster_checks_storage_and_leaves(ray_head: str, tmp_path: Path):
    import json

    import ray

    storage = tmp_path / "results"
    args = [ROOT / "search_spaces" / "smoke.yaml", ray_head, f"sqlite:///{tmp_path}/mlflow.db"]
    proc = subprocess.run(
        [sys.executable, "-c", _JOIN, *map(str, args), str(storage)],
        env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = [Row(**r) for r in result["rows"]]
    by = {r.check: r for r in rows}
    assert by["Ray"].detail.startswith(f"{ray_head}: Ray {ray.__version__}, 1 alive node(s)")
    (node,) = [r for r in rows if r.check.startswith("Ray node ")]
    assert node.detail.startswith("1 CPUs, 0 GPUs") and node.detail.endswith("head")
    assert by["trial slots"].detail.startswith("1 trial(s) at once on the cluster")
    assert by["shared storage"].status == "ok"
    assert by["shared storage"].detail.startswith(f"{storage}: all 1 Ray node(s)")
    assert by["MLflow tracking"].status == "ok"
    assert exit_code(rows) == 0, [r for r in rows if r.status == "fail"]
    assert not result["joined"]  # disconnected; the cluster itself is the fixture's
    assert not [p for p in storage.iterdir() if p.name.startswith(".ohem_tune_storage")]
