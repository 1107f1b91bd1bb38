"""A 2-node Ray cluster on localhost (token auth) plus a real `mlflow server`: trials land on both
nodes and every run reaches the server; a SQLite URI, and a storage path the worker node sees as
another folder, are refused up front on a multi-node cluster.

The worker node runs in its own mount namespace where one folder (`node_local`) is bind-mounted
over by another: the same absolute path names different directories on the two nodes, as a
node-local disk does where a shared mount was expected."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ohem_tune import tracking_keys as tk
from ohem_tune.orchestration.cluster import MARKER_PREFIX
from ohem_tune.orchestration.keys import TAG_RAY_NODE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GB = 1024**3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A child in its own process group, so teardown stops exactly what this test started."""
    return subprocess.Popen(
        cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def alive_nodes(address: str, env: dict[str, str]) -> list[str]:
    """The ids of the cluster's alive nodes (none while it does not answer)."""
    code = (
        f"import ray; ray.init(address={address!r}, log_to_driver=False);"
        "print(','.join(n['NodeID'] for n in ray.nodes() if n['Alive']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip().splitlines()[-1].split(",") if out.returncode == 0 else []


def own_mounts(shadowed: Path, view: Path) -> list[str] | None:
    """A command prefix that runs its command with `view` mounted over `shadowed`, or None
    where this machine allows no mount namespace (root: `unshare -m`; else a user namespace)."""
    prefix = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    wrap = [*prefix, "sh", "-c", f'mount --bind "{view}" "{shadowed}" && exec "$0" "$@"']
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run([*wrap, "true"], capture_output=True, timeout=30)
    return wrap if probe.returncode == 0 else None


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head + worker node (1 CPU each, memory capped per node) and an MLflow server."""
    work = tmp_path_factory.mktemp("cluster")
    ray_tmp = tempfile.mkdtemp(prefix="oc", dir="/tmp")  # Ray's socket paths are length-capped
    env = {
        **os.environ,
        "RAY_TMPDIR": ray_tmp,
        "RAY_AUTH_MODE": "token",  # the default for new clusters: joiners need the token
        "RAY_AUTH_TOKEN": uuid.uuid4().hex,  # kept out of ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    ray_port, mlflow_port = free_port(), free_port()
    address = f"127.0.0.1:{ray_port}"
    node_flags = ["--num-cpus=1", "--num-gpus=0", f"--memory={2 * GB}",
                  f"--object-store-memory={GB // 8}", "--block"]  # fmt: skip
    procs = [
        start([str(BIN / "mlflow"), "server", "--backend-store-uri",
               f"sqlite:///{work}/server.db", "--artifacts-destination", str(work / "artifacts"),
               "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
              env, work / "mlflow.log"),
        start([str(BIN / "ray"), "start", "--head", f"--port={ray_port}",
               "--include-dashboard=false", "--node-ip-address=127.0.0.1", *node_flags],
              env, work / "head.log"),
    ]  # fmt: skip
    node_local, worker_view = work / "node_local", work / "worker_view"
    node_local.mkdir()
    worker_view.mkdir()
    mounts = own_mounts(node_local, worker_view)
    try:
        wait_for(lambda: len(alive_nodes(address, env)) >= 1, 90, "the Ray head")
        head = alive_nodes(address, env)
        procs.append(
            start([*(mounts or []), str(BIN / "ray"), "start", f"--address={address}",
                   "--node-ip-address=127.0.0.1", *node_flags], env, work / "worker.log")
        )  # fmt: skip
        wait_for(lambda: len(alive_nodes(address, env)) >= 2, 90, "the second Ray node")
        (worker,) = set(alive_nodes(address, env)) - set(head)
        url = f"http://127.0.0.1:{mlflow_port}"
        wait_for(lambda: healthy(url), 90, "the MLflow server")
        yield {"address": address, "env": env, "url": url, "work": work, "head": head[0],
               "worker": worker, "node_local": node_local if mounts else None}  # fmt: skip
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def run_cli(cluster, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "ohem-tune"), "run", str(ROOT / "search_spaces" / "smoke.yaml"),
           "--address", cluster["address"], *args]  # fmt: skip
    return subprocess.run(
        cmd, cwd=ROOT, env=cluster["env"], capture_output=True, text=True, timeout=400
    )


def test_sqlite_store_is_refused_on_a_multi_node_cluster(cluster, tmp_path):
    out = run_cli(cluster, "--tracking-uri", f"sqlite:///{tmp_path}/m.db",
                  "--storage-path", str(tmp_path / "results"))  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "trials on other nodes cannot write it" in out.stderr
    assert "--tracking-uri http://" in out.stderr


def test_trials_land_on_both_nodes_and_runs_reach_the_server(cluster, tmp_path, dataset_cache):
    out = run_cli(
        cluster,
        "--tracking-uri", cluster["url"],
        "--storage-path", str(tmp_path / "results"),
        "--set", f"dataset.synthetic.cache_dir={dataset_cache}",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client = MlflowClient(cluster["url"])
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tk.TAG_ROLE}` = 'trial'")
    assert len(runs) == 2
    assert all(r.info.status == "FINISHED" and tk.FINAL_MAP in r.data.metrics for r in runs)
    assert len({r.data.tags[TAG_RAY_NODE] for r in runs}) == 2  # one trial per 1-CPU node
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert "metrics.parquet" in artifacts  # proxied through the server
    # the storage check passed (both nodes see tmp_path) and left no marker behind
    assert not list((tmp_path / "results").glob(MARKER_PREFIX + "*"))
    # checkpoints stay in trials/ on the shared storage (retries on any node resume from there);
    # Tune gets no second copy
    exp_dir = tmp_path / "results" / "smoke" / "default"
    assert list((exp_dir / "trials").rglob("model_*.pt"))
    assert not list((exp_dir / "tune").rglob("*.pt"))


def test_storage_a_node_sees_elsewhere_is_refused_before_any_trial(cluster, dataset_cache):
    if cluster["node_local"] is None:
        pytest.skip("no mount namespace here (unshare -m): both nodes would see one folder")
    storage = cluster["node_local"] / "results"
    out = run_cli(
        cluster,
        "--tracking-uri", cluster["url"],
        "--experiment", "smoke-storage",
        "--storage-path", str(storage),
        "--set", f"dataset.synthetic.cache_dir={dataset_cache}",
    )  # fmt: skip
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
    err = " ".join(out.stderr.split())
    assert f"--storage-path {storage}: 1 of 2 Ray node(s) do not share it with the driver" in err
    assert "the marker file the driver wrote there is missing" in err
    assert cluster["worker"][:12] in err and cluster["head"][:12] not in err  # only that node
    assert "a filesystem every node mounts at the same path" in err and "cloud URI" in err
    assert not list(storage.glob(MARKER_PREFIX + "*"))
    client = MlflowClient(cluster["url"])
    exp = client.get_experiment_by_name("smoke-storage")
    assert client.search_runs([exp.experiment_id]) == []  # no trial, not even the parent run
