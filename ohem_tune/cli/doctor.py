"""`ohem-tune doctor [SPEC]`: check this machine, the cluster and a spec's inputs before a long run.

Heavy imports (torch, ray) happen inside the command so `ohem-tune --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ohem_tune.cli.common import console


def doctor(
    spec: Path | None = typer.Argument(
        None,
        help="Spec YAML whose trials' inputs to check (e.g. search_spaces/paper_ablation.yaml).",
    ),
    profile: str | None = typer.Option(
        None, "--profile", "-p", help="Profile of the spec (default: the spec's default_profile)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", "-s", help="Config override KEY=VALUE applied to every trial (repeatable)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster to check (HOST:PORT or 'auto'); default: local Ray."
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow URI (default: spec, else sqlite:///<cwd>/mlflow.db)."
    ),
    storage_path: str | None = typer.Option(
        None, "--storage-path", help="Where checkpoints go (default: ray_results, as `run`)."
    ),
    only: list[str] = typer.Option(
        [], "--only", help="Check only these variants (repeatable or comma-separated)."
    ),
    resources: list[str] = typer.Option(
        [], "--resources", help="Per-trial resources, as for `run`, e.g. cpu=1,gpu=0."
    ),
) -> None:
    """Print one row per check (ok / warn / fail / skip); exit 1 when any check fails.

    Checks torch / CUDA / driver, each GPU and a small op on each device, the Ray cluster (or the
    local Ray `run` would start), MLflow, shared storage, disk space, and for SPEC every dataset,
    proposal file and weights file its trials read.
    """
    from ohem_tune.doctor import exit_code
    from ohem_tune.doctor.checks import run_checks
    from ohem_tune.doctor.table import print_rows

    rows = run_checks(spec, profile, set_, address, tracking_uri, storage_path, only, resources)
    print_rows(rows, console)
    code = exit_code(rows)
    if code:
        raise SystemExit(code)  # not typer.Exit: the CLI runs click with standalone_mode=False
