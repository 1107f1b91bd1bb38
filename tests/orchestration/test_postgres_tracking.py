"""The smoke spec against `mlflow server --backend-store-uri postgresql://...` (what
docs/cluster.md recommends for multi-node runs): a real PostgreSQL server on 127.0.0.1 (the
dev extras' pgserver wheel), every trial run reaches the server with its final metrics, and
the rows really are in PostgreSQL."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ohem_tune import tracking_keys as tk
from tests.orchestration.test_cluster import free_port, healthy, start, stop, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVER_USER = "nobody"  # postgres refuses to run as root


def postgres_install() -> Path:
    """The PostgreSQL build inside the pgserver wheel (bin/, lib/, share/)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "PostgreSQL server missing: the dev extra pgserver is not installed; run "
            "`bash scripts/setup.sh` (it installs '.[dev]')",
            pytrace=False,
        )
    install = Path(spec.submodule_search_locations[0]) / "pginstall"
    if not (install / "bin" / "postgres").is_file():
        pytest.fail(f"PostgreSQL server missing: no {install}/bin/postgres", pytrace=False)
    return install


def copy_install(install: Path, dest: Path) -> Path:
    """A copy of the build for the unprivileged server user: the venv may sit below a directory
    only root can enter. Keeps the wheel's layout (its binaries find the bundled libpq at
    $ORIGIN/../../../pgserver.libs); bin, lib and share are ~26 MB."""
    package = dest / install.parent.name / install.name
    for part in ("bin", "lib", "share"):
        shutil.copytree(install / part, package / part, symlinks=True)
    libs = install.parent.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, dest / libs.name, symlinks=True)
    return package


def run_as(user: pwd.struct_passwd | None) -> dict:
    """Popen arguments that drop root to `user` (postgres will not run as root)."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@pytest.fixture(scope="module")
def postgres():
    """A fresh PostgreSQL cluster listening on 127.0.0.1:<free port>, stopped at the end."""
    install = postgres_install()
    base = Path(tempfile.mkdtemp(prefix="ohem-pg-", dir="/tmp"))
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.fail(f"running as root and there is no user {SERVER_USER!r} to run postgres "
                        "as (postgres refuses root)", pytrace=False)  # fmt: skip
        install = copy_install(install, base / "pg")
        os.chown(base, user.pw_uid, user.pw_gid)
    data, port, log = base / "data", free_port(), base / "postgres.log"
    proc = None
    try:
        initdb = subprocess.run(
            [str(install / "bin" / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=120, **run_as(user),
        )  # fmt: skip
        if initdb.returncode != 0:
            pytest.fail(f"initdb failed: {initdb.stderr.strip()[-300:]}", pytrace=False)
        proc = subprocess.Popen(
            [str(install / "bin" / "postgres"), "-D", str(data), "-h", "127.0.0.1",
             "-p", str(port), "-k", str(base), "-c", "fsync=off"],
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            **run_as(user),
        )  # fmt: skip
        wait_for(lambda: accepts(port) or proc.poll() is not None, 60, "PostgreSQL to start")
        if proc.poll() is not None:
            pytest.fail(f"postgres exited: {log.read_text().strip()[-300:]}", pytrace=False)
        with connect(port, "postgres") as conn:
            conn.autocommit = True
            conn.execute("CREATE DATABASE mlflow")
        yield {"port": port, "uri": f"postgresql://postgres@127.0.0.1:{port}/mlflow"}
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def connect(port: int, dbname: str):
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname=dbname, connect_timeout=5
    )


def accepts(port: int) -> bool:
    import psycopg

    try:
        with connect(port, "postgres"):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with its backend store in the PostgreSQL database."""
    work = tmp_path_factory.mktemp("pg_mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # fmt: skip
    proc = start(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", postgres["uri"],
         "--artifacts-destination", str(work / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env, work / "mlflow.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or proc.poll() is not None, 120, "the MLflow server")
        if proc.poll() is not None:
            tail = (work / "mlflow.log").read_text().strip().splitlines()[-1:]
            pytest.fail(f"mlflow server exited: {' '.join(tail)}", pytrace=False)
        yield url
    finally:
        stop(proc)


def test_smoke_spec_runs_against_a_postgres_backed_mlflow_server(
    postgres, mlflow_server, tmp_path, dataset_cache
):
    ray_tmp = tempfile.mkdtemp(prefix="opg", dir="/tmp")  # Ray's socket paths are length-capped
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0",
           "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    cmd = [str(BIN / "ohem-tune"), "run", str(ROOT / "search_spaces" / "smoke.yaml"),
           "--tracking-uri", mlflow_server, "--storage-path", str(tmp_path / "results"),
           "--set", f"dataset.synthetic.cache_dir={dataset_cache}"]  # fmt: skip
    try:
        out = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tk.TAG_ROLE}` = 'trial'")
    assert sorted(r.data.tags[tk.TAG_VARIANT] for r in runs) == ["frcn", "ohem"]
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in (tk.FINAL_MAP, tk.FINAL_SEC_PER_ITER, tk.FINAL_PEAK_MEM_GB):
            assert key in run.data.metrics, (run.data.tags[tk.TAG_VARIANT], key)
        assert len(client.get_metric_history(run.info.run_id, tk.LOSS)) >= 2  # per-step rows

    with connect(postgres["port"], "mlflow") as conn:  # the server's store is this database
        stored = dict(conn.execute("SELECT run_uuid, status FROM runs").fetchall())
        for run in runs:
            assert stored[run.info.run_id] == "FINISHED"
            (value,) = conn.execute(
                "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = %s",
                (run.info.run_id, tk.FINAL_MAP),
            ).fetchone()
            assert value == pytest.approx(run.data.metrics[tk.FINAL_MAP])
    assert not list(tmp_path.glob("*.db"))  # nothing fell back to a local SQLite store
