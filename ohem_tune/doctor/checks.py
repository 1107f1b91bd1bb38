"""All of the doctor's checks in table order: this machine, where trials run and write, and
what the spec's trials read. Each group's rows come from its own module."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ohem_tune.doctor import cluster, environment, inputs
from ohem_tune.doctor.rows import Row
from ohem_tune.errors import OhemTuneError
from ohem_tune.spec.schema import ResourcesSpec


@contextmanager
def quiet_project_logs() -> Iterator[None]:
    """The loaders' INFO / WARNING lines (weights summary, clipped boxes) would interleave with
    the table; the rows carry what matters."""
    logger = logging.getLogger("ohem_tune")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_checks(
    spec_path: str | Path | None = None,
    profile: str | None = None,
    overrides: Sequence[str] = (),
    address: str | None = None,
    tracking_uri: str | None = None,
    storage_path: str | Path | None = None,
    only: Sequence[str] = (),
    resources: Sequence[str] = (),
) -> list[Row]:
    """Every row of `ohem-tune doctor`. A bad spec or --set raises the usual one-line error."""
    from ohem_tune.tracking_uri import resolve_tracking_uri

    spec, trials = None, []
    if spec_path is not None:
        spec, trials = inputs.load_trials(spec_path, profile, overrides, only, resources)
    per_trial = trials[0].resources if trials else None
    gpus = per_trial.gpu if per_trial else 0.0
    # With --address the trials run on the cluster's nodes: their GPUs count, not this machine's.
    asker = f"the trials of profile '{trials[0].profile}' ({gpus:g} GPU each)" if trials else ""
    rows = environment.version_rows()
    rows += environment.gpu_rows(gpus > 0 and not address, asker)
    rows += environment.ops_rows(gpus > 0 and not address)

    uri = resolve_tracking_uri(tracking_uri or (spec.tracking.uri if spec else None))
    storage = cluster.resolve_storage(storage_path)
    if address:
        rows += cluster_checks(address, per_trial, storage, uri)
    else:
        rows.append(cluster.local_ray_row())
        if per_trial:
            cpus, local_gpus = cluster.local_ray_resources()
            node = {"CPU": cpus, "GPU": local_gpus}
            rows.append(cluster.slots_row(per_trial, [node], "this machine"))
        rows.append(cluster.storage_row(storage, None))
        rows.append(cluster.tracking_row(uri, None))
    rows.append(cluster.disk_row(storage, [t.config for t in trials]))
    if trials:
        rows += spec_rows(spec_path, trials)  # type: ignore[arg-type]
    return rows


def cluster_checks(
    address: str, per_trial: ResourcesSpec | None, storage: str, uri: str
) -> list[Row]:
    """The cluster's rows, or one failed Ray row (and skipped per-node checks) when it cannot
    be joined."""
    try:
        with cluster.joined_cluster(address):
            rows = cluster.cluster_rows(address)
            if per_trial:
                rows.append(cluster.slots_row(per_trial, cluster.node_resources(), "the cluster"))
            rows.append(cluster.storage_row(storage, address))
            rows.append(cluster.tracking_row(uri, address))
            return rows
    except OhemTuneError as exc:
        skipped = f"skipped: cannot join the Ray cluster at {address}"
        return [
            Row("Ray", "fail", str(exc)),
            Row("shared storage", "skip", skipped),
            Row("MLflow tracking", "skip", skipped),
        ]


def spec_rows(spec_path: str | Path, trials: Sequence) -> list[Row]:
    """The spec's row, then its datasets, proposal files and weights files."""
    configs = inputs.distinct_configs(trials)
    with quiet_project_logs():
        fixes = inputs.prepare_fixes(configs)
        return [
            inputs.spec_row(spec_path, trials),
            *inputs.dataset_rows(configs),
            *inputs.proposal_rows(configs, fixes),
            *inputs.weights_rows(configs, fixes),
        ]
