"""The Ray side of `ohem-tune run` before any trial: connect, check the cluster, count slots.

On a cluster each node must reach the MLflow tracking server and see the checkpoint storage as
the driver does; both are probed by a zero-CPU Ray task pinned to every live node.
`check_shared_storage` returns a finding (for `ohem-tune doctor`); `require_shared_storage`
raises it as a one-line error (for `ohem-tune run`).
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ohem_tune.errors import ConfigError, TrackingError
from ohem_tune.orchestration import tracking
from ohem_tune.orchestration.plan import is_uri

QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # closed networks: no phoning home
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # not "Creating initial MLflow database tables..."
    "RAY_AIR_NEW_OUTPUT": "0",  # our own progress table replaces Tune's console output
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}

# Set in every trial worker (job-level runtime_env). Reused trial actors wait for the previous
# trial's thread to end (MLflow calls in its `finally`); Ray's 2 s default errors the next trial.
WORKER_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "60", "RAY_USAGE_STATS_ENABLED": "0",
              "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip

PROBE_TIMEOUT_S = 60.0
MARKER_PREFIX = ".ohem_tune_storage_check-"


def quiet_env() -> None:
    """Environment defaults for the driver (set before Ray and MLflow are imported)."""
    import logging

    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # After Ctrl-C, Tune warns about every trial that never started: the summary says it once.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def gcs_port_problem(address: str, timeout_s: float = 10.0) -> str:
    """Why nothing answers at HOST:PORT ('' when a TCP connection opens, or for 'auto').

    ray.init retries a dead address for many minutes; a plain TCP connect answers in seconds.
    """
    if address == "auto":
        return ""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return f"--address {address}: expected HOST:PORT (the head's GCS address) or 'auto'"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return (
            f"--address {address}: nothing answers there ({exc.strerror or exc}); start the head "
            "with `ray start --head --port=6379` and pass HOST:6379"
        )
    return ""


def connect_ray(address: str | None, resources_gpu: float) -> bool:
    """Connect to `address` or start a local Ray (returns True when this call started it)."""
    import ray

    if ray.is_initialized():
        return False
    problem = gcs_port_problem(address) if address else ""
    if problem:
        raise ConfigError(problem)
    try:
        runtime_env = {"env_vars": dict(WORKER_ENV)}
        if address:
            ray.init(
                address=address,
                log_to_driver=False,
                configure_logging=False,
                runtime_env=runtime_env,
            )
        else:
            ray.init(
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                runtime_env=runtime_env,
            )
    except Exception as exc:  # ConnectionError, auth errors, timeouts
        ray.shutdown()  # a failed init leaves a half-made driver; later ray.init calls inherit it
        if address:
            raise ConfigError(
                f"--address {address}: cannot connect to the Ray cluster ({exc}). Start it with "
                "`ray start --head`, pass its GCS address (HOST:6379), and export "
                "RAY_AUTH_MODE=token when the cluster uses token auth (the default)"
            ) from None
        raise
    return True


def live_nodes() -> list[dict[str, Any]]:
    """The cluster's alive nodes, as `ray.nodes()` describes them."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def _on_each_node(nodes: list[dict[str, Any]], fn: Any, *args: Any) -> dict[str, str]:
    """Run the remote `fn(*args)` once on every node (pinned); node id -> its answer."""
    import ray
    from ray.exceptions import GetTimeoutError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    refs = {
        n["NodeID"]: fn.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(*args)
        for n in nodes
    }
    answers = {}
    for node_id, ref in refs.items():
        try:
            answers[node_id] = ray.get(ref, timeout=PROBE_TIMEOUT_S)
        except GetTimeoutError:
            answers[node_id] = f"no answer within {PROBE_TIMEOUT_S:.0f} s"
    return answers


def check_cluster_tracking(uri: str) -> None:
    """A local store cannot be shared by nodes; an HTTP server must answer from every node."""
    import ray

    nodes = live_nodes()
    if len(nodes) <= 1:
        return
    if tracking.is_local_store(uri):
        raise TrackingError(
            f"tracking URI {uri} is a file on this machine, but the Ray cluster has "
            f"{len(nodes)} nodes and trials on other nodes cannot write it; start a tracking "
            "server (`mlflow server --backend-store-uri sqlite:///mlflow.db --host 0.0.0.0 "
            "--port 5000`) and pass --tracking-uri http://<this-host>:5000"
        )

    @ray.remote(num_cpus=0)
    def probe(target: str) -> str:
        try:
            tracking.check_reachable(target, timeout_s=5)
            return ""
        except TrackingError as exc:
            return str(exc)

    for node_id, error in _on_each_node(nodes, probe, uri).items():
        if error:
            raise TrackingError(f"from Ray node {node_id[:12]}: {error}")


@dataclass(frozen=True)
class NodeStorage:
    """What one Ray node found at the storage path."""

    node_id: str
    address: str  # the node's IP, as Ray reports it
    ok: bool
    detail: str  # why not, when not ok


@dataclass(frozen=True)
class StorageCheck:
    """Whether every live node sees the checkpoint storage as the driver does."""

    storage: str
    ok: bool
    detail: str  # one line: what was checked and what was found
    nodes: tuple[NodeStorage, ...] = field(default_factory=tuple)

    @property
    def failing(self) -> tuple[NodeStorage, ...]:
        return tuple(n for n in self.nodes if not n.ok)


def check_shared_storage(storage_path: str) -> StorageCheck:
    """Write a marker file at `storage_path` here; every live Ray node reads it and writes a file.

    A cloud URI is not probed: every node writes it through its own filesystem client. Needs a
    connected Ray (`connect_ray`).
    """
    if is_uri(storage_path):
        return StorageCheck(
            storage_path, True, f"{storage_path}: cloud URI, passed to Ray Tune as is (not probed)"
        )
    import ray

    root = Path(storage_path)
    marker = root / f"{MARKER_PREFIX}{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    try:
        root.mkdir(parents=True, exist_ok=True)
        marker.write_text(token)
    except OSError as exc:
        return StorageCheck(
            storage_path, False, f"{root}: the driver cannot write there ({exc.strerror})"
        )

    @ray.remote(num_cpus=0)
    def read_marker(path: str, expected: str) -> str:
        try:
            found = Path(path).read_text()
        except FileNotFoundError:
            return "the marker file the driver wrote there is missing"
        except OSError as exc:
            return f"cannot read the driver's marker file ({exc.strerror})"
        if found != expected:
            return "a different file is at the driver's marker path"
        own = Path(f"{path}.{uuid.uuid4().hex}")
        try:  # trials write checkpoints there: a read-only mount is no use either
            own.write_text("")
            own.unlink()
        except OSError as exc:
            return f"sees the marker but cannot write there ({exc.strerror})"
        return ""

    try:
        nodes = live_nodes()
        answers = _on_each_node(nodes, read_marker, str(marker), token)
    finally:
        marker.unlink(missing_ok=True)
    findings = tuple(
        NodeStorage(
            n["NodeID"], n.get("NodeManagerAddress", "?"), not answers[n["NodeID"]],
            answers[n["NodeID"]],
        )
        for n in nodes
    )  # fmt: skip
    bad = [n for n in findings if not n.ok]
    if bad:
        names = ", ".join(f"{n.node_id[:12]} ({n.address})" for n in bad)
        detail = (
            f"{root}: {len(bad)} of {len(findings)} Ray node(s) do not share it with the driver: "
            f"{names}: {bad[0].detail}"
        )
    else:
        detail = f"{root}: all {len(findings)} Ray node(s) read the driver's marker file and write"
    return StorageCheck(storage_path, not bad, detail, findings)


def require_shared_storage(storage_path: str) -> StorageCheck:
    """`check_shared_storage`, raised as a one-line error with the fix when a node cannot see it."""
    check = check_shared_storage(storage_path)
    if not check.ok:
        why = "; their trials would write checkpoints to their own disks" if check.failing else ""
        raise ConfigError(
            f"--storage-path {check.detail}{why}. Pass --storage-path on a filesystem every node "
            "mounts at the same path (NFS, EFS, Lustre) or a cloud URI (s3://bucket/prefix, gs://...)"
        )
    return check


def node_slots(resources: Any, nodes: list[dict[str, float]]) -> int:
    """How many trials fit at once on nodes with these resources (a trial runs on one node)."""
    fits = 0
    for res in nodes:
        on_node = math.floor(res.get("CPU", 0) / resources.cpu + 1e-9)
        if resources.gpu:
            on_node = min(on_node, math.floor(res.get("GPU", 0) / resources.gpu + 1e-9))
        fits += on_node
    return fits


def autoscaler_node_types() -> list[dict[str, float]]:
    """Resources of one node of each type the cluster's autoscaler may start (empty: no
    autoscaler config in the GCS). Ray Train's feasibility check reads the same config."""
    import logging

    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception as exc:  # a private API that moved: say so, judge by the live nodes
        logging.getLogger(__name__).warning("cannot read the autoscaler's node types: %s", exc)
        return []
    if config is None:
        return []
    return [dict(g.resources) for g in config.node_group_configs if g.max_count != 0]


def largest_node(nodes: list[dict[str, float]]) -> str:
    """'at most 2 CPUs and 0 GPUs': the most any one of `nodes` offers."""
    most_cpu = max((r.get("CPU", 0) for r in nodes), default=0)
    most_gpu = max((r.get("GPU", 0) for r in nodes), default=0)
    return f"at most {most_cpu:g} CPUs and {most_gpu:g} GPUs"


def per_trial(resources: Any) -> str:
    """'4 CPU + 1 GPU per trial'."""
    gpu = f" + {resources.gpu:g} GPU" if resources.gpu else ""
    return f"{resources.cpu:g} CPU{gpu} per trial"


def cluster_slots(resources: Any, where: str = "the local Ray") -> int:
    """How many trials fit at once on the joined cluster. None fitting is a one-line error (Ray
    Tune would leave every trial pending forever), unless an autoscaler can add such nodes."""
    nodes = [dict(n.get("Resources") or {}) for n in live_nodes()]
    slots = node_slots(resources, nodes)
    if slots == 0:  # a node type the autoscaler can start and that holds a trial: Tune waits
        slots = max((node_slots(resources, [t]) for t in autoscaler_node_types()), default=0)
    if slots == 0:
        raise ConfigError(
            f"resources: {per_trial(resources)}, but {where} offers {largest_node(nodes)} on "
            "one node, and no autoscaler can add more: no trial "
            "could start; lower the spec's resources (--resources cpu=1,gpu=0 runs on CPUs) "
            "or join a cluster that has them (--address)"
        )
    if resources.max_concurrent:
        slots = min(slots, resources.max_concurrent)
    return slots
