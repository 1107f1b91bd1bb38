"""Where trials would run and write: the Ray cluster (or the local Ray `run` would start), how
many trials fit, the MLflow tracking store, shared storage and the disk under the checkpoints.

Without --address nothing is started: the local CPUs and GPUs come from Ray's own detection.
With --address the doctor joins the cluster as a driver and leaves it as it found it.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ohem_tune.config import Config
from ohem_tune.doctor.rows import Row
from ohem_tune.errors import OhemTuneError
from ohem_tune.orchestration import cluster as run_cluster
from ohem_tune.orchestration.cluster import gcs_port_problem
from ohem_tune.orchestration.plan import resolve_storage as _resolve_storage
from ohem_tune.spec.schema import ResourcesSpec


def resolve_storage(storage_path: str | Path | None) -> str:
    """The storage root `ohem-tune run` would use: a URI untouched, else an absolute path."""
    return str(_resolve_storage(storage_path))


# ------------------------------------------------------------------------------ Ray


def local_ray_resources() -> tuple[float, float]:
    """(CPUs, GPUs) a local `ray.init()` would register on this machine, by Ray's detection
    (cgroup CPU limits, CUDA_VISIBLE_DEVICES), without starting Ray."""
    from ray._private.accelerators import get_accelerator_manager_for_resource
    from ray._private.utils import get_num_cpus

    manager = get_accelerator_manager_for_resource("GPU")
    gpus = manager.get_current_node_num_accelerators()
    visible = manager.get_current_process_visible_accelerator_ids()
    if visible is not None:
        gpus = min(gpus, len(visible))
    return float(get_num_cpus()), float(gpus)


def local_ray_row() -> Row:
    """What a local run gets: Ray is started by `ohem-tune run`, with these resources."""
    import ray

    cpus, gpus = local_ray_resources()
    return Row(
        "Ray",
        "ok",
        f"local: `ohem-tune run` starts Ray {ray.__version__} on this machine "
        f"with {cpus:g} CPUs, {gpus:g} GPUs (none started by the doctor)",
    )


@contextmanager
def joined_cluster(address: str) -> Iterator[None]:
    """Connect to the Ray cluster at `address` as a driver; disconnect on exit (the cluster and
    its other jobs keep running). A refused connection is a one-line OhemTuneError."""
    import ray

    from ohem_tune.errors import ConfigError

    if ray.is_initialized():
        raise ConfigError("doctor: Ray is already initialised in this process; run it alone")
    problem = gcs_port_problem(address)
    if problem:
        raise ConfigError(problem)
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # ConnectionError, auth errors, timeouts
        ray.shutdown()  # a failed init leaves a half-made driver; later ray.init calls inherit it
        raise ConfigError(
            f"--address {address}: cannot connect to the Ray cluster ({exc}); pass the head's "
            "GCS address (HOST:6379), and export RAY_AUTH_MODE=token (with its token) when the "
            "cluster uses token auth"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def node_resources() -> list[dict[str, float]]:
    """Resources of each alive node of the joined cluster."""
    import ray

    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]


def cluster_rows(address: str) -> list[Row]:
    """The joined cluster: one row for the whole, one per node (address, CPUs, GPUs, memory)."""
    import ray

    nodes = ray.nodes()
    alive = [n for n in nodes if n.get("Alive")]
    dead = len(nodes) - len(alive)
    total = ray.cluster_resources()
    summary = (
        f"{address}: Ray {ray.__version__}, {len(alive)} alive node(s), {total.get('CPU', 0):g} "
        f"CPUs, {total.get('GPU', 0):g} GPUs"
    )
    rows = [Row("Ray", "warn" if dead else "ok", summary + (f"; {dead} dead node(s)" * bool(dead)))]
    for node in alive:
        res = node.get("Resources") or {}
        kinds = [k.removeprefix("accelerator_type:") for k in res if k.startswith("accelerator_")]
        gpu = f"{res.get('GPU', 0):g} GPUs" + (f" ({', '.join(kinds)})" if kinds else "")
        head = ", head" if any(k.startswith("node:__internal_head__") for k in res) else ""
        rows.append(
            Row(
                f"Ray node {node.get('NodeManagerAddress', '?')}",
                "ok",
                f"{res.get('CPU', 0):g} CPUs, {gpu}, {res.get('memory', 0) / 2**30:.1f} GiB "
                f"memory{head}",
            )
        )
    return rows


def slots_row(resources: ResourcesSpec, nodes: Sequence[dict[str, float]], where: str) -> Row:
    """How many trials fit at once on `nodes` (a trial runs on one node); none: a failure, as
    every trial would wait forever."""
    fits = run_cluster.node_slots(resources, list(nodes))
    each = run_cluster.per_trial(resources)
    if fits == 0:
        per_node = " on one node" if len(nodes) > 1 else ""
        return Row(
            "trial slots",
            "fail",
            f"{each}, but {where} offers {run_cluster.largest_node(list(nodes))}{per_node}: no "
            "trial could start; lower --resources or use a bigger machine",
        )
    capped = min(fits, resources.max_concurrent) if resources.max_concurrent else fits
    note = f" (max_concurrent {resources.max_concurrent})" if capped < fits else ""
    return Row("trial slots", "ok", f"{capped} trial(s) at once on {where}{note}, {each}")


# ------------------------------------------------------------------------------ tracking, storage


def tracking_row(uri: str, address: str | None) -> Row:
    """The MLflow store is usable from here and, on a multi-node cluster, from every node."""
    from ohem_tune.orchestration import tracking

    try:
        tracking.check_reachable(uri)
        if address:
            run_cluster.check_cluster_tracking(uri)
    except OhemTuneError as exc:
        return Row("MLflow tracking", "fail", str(exc))
    kind = "a local store (single machine)" if tracking.is_local_store(uri) else "a server"
    where = "from every node" if address else "from this machine"
    return Row("MLflow tracking", "ok", f"{uri}: {kind}, usable {where}")


def storage_row(storage: str, address: str | None) -> Row:
    """Checkpoints must go where every node reads them: orchestration's check_shared_storage
    with --address; a local run writes on this machine only."""
    if not address:
        return Row(
            "shared storage", "skip", f"local Ray: checkpoints stay on this machine ({storage})"
        )
    try:
        result = run_cluster.check_shared_storage(storage)
    except OhemTuneError as exc:
        return Row("shared storage", "fail", str(exc))
    if not result.ok:
        return Row(
            "shared storage",
            "fail",
            f"{result.detail}; pass --storage-path on a "
            "filesystem every node mounts at the same path, or a cloud URI",
        )
    return Row("shared storage", "ok", result.detail)


# ------------------------------------------------------------------------------ disk


def checkpoint_bytes(cfg: Config) -> int:
    """About one checkpoint of cfg's model: float32 weights plus SGD momentum (no allocation:
    the model is built on the meta device)."""
    import torch

    from ohem_tune.modeling import build_model

    bare = cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": None})})
    with torch.device("meta"):
        model = build_model(bare, len(cfg.dataset.class_names or ()) or 20)
    params = sum(p.numel() for p in model.parameters())
    return params * 4 * 2


def checkpoints_kept(cfg: Config) -> int:
    """Checkpoint files a finished trial leaves on a filesystem storage: the trainer's kept ones
    (Tune gets no copy there; see TrialContext.tune_checkpoints)."""
    train = cfg.train
    written = math.ceil(train.max_iter / train.checkpoint_period) if train.checkpoint_period else 1
    return min(written, train.keep_checkpoints) if train.keep_checkpoints else written


def size_text(num_bytes: float) -> str:
    """'12.3 GiB', or MiB below a GiB."""
    if num_bytes >= 2**30:
        return f"{num_bytes / 2**30:.1f} GiB"
    return f"{num_bytes / 2**20:.1f} MiB"


def disk_row(storage: str, configs: Sequence[Config]) -> Row:
    """Free space where checkpoints go, against about what the trials will write there."""
    if "://" in storage:
        return Row("disk (checkpoints)", "skip", f"{storage}: cloud storage")
    path = Path(storage).expanduser().resolve()
    probe = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    shown = f"{size_text(free)} free at {path}"
    if not configs:
        return Row("disk (checkpoints)", "ok", shown)
    sizes: dict[str, int] = {}  # trials of a row (and rows of a trunk) share one model
    need = 0
    for cfg in configs:
        key = cfg.model.model_dump_json() + str(cfg.dataset.class_names)
        if key not in sizes:
            sizes[key] = checkpoint_bytes(cfg)
        need += sizes[key] * checkpoints_kept(cfg)
    shown += f"; the trials write about {size_text(need)} of checkpoints"
    if free < need:
        return Row(
            "disk (checkpoints)",
            "fail",
            f"{shown}; free space or pass --storage-path on a "
            "bigger disk (or lower train.keep_checkpoints)",
        )
    return Row("disk (checkpoints)", "ok", shown)
