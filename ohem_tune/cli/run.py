"""`ohem-tune run SPEC`: run an ablation or search on Ray Tune, tracked in MLflow.

Heavy imports (ray, mlflow, torch) happen inside the command so `ohem-tune --help` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ohem_tune.cli.common import console


def run(
    spec: Path = typer.Argument(
        ..., help="Search-space spec YAML (e.g. search_spaces/smoke.yaml)."
    ),
    profile: str | None = typer.Option(
        None, "--profile", "-p", help="Profile of the spec (default: the spec's default_profile)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", "-s", help="Config override KEY=VALUE applied to every trial (repeatable)."
    ),
    seeds: int | None = typer.Option(
        None, "--seeds", min=1, help="Seeds per variant (0..K-1); default: profile / spec."
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster to join (HOST:PORT or 'auto'); default: local Ray."
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow URI (default: spec, else sqlite:///<cwd>/mlflow.db)."
    ),
    storage_path: str | None = typer.Option(
        None,
        "--storage-path",
        help="Checkpoints and Tune state: a folder (shared by every node on a cluster) or a "
        "cloud URI such as s3://bucket/prefix.",
    ),
    max_concurrent: int | None = typer.Option(
        None, "--max-concurrent", min=1, help="Cap on trials running at once."
    ),
    experiment: str | None = typer.Option(
        None, "--experiment", help="MLflow experiment and folder name (default: the spec's)."
    ),
    only: list[str] = typer.Option(
        [], "--only", help="Run only these variants (repeatable or comma-separated)."
    ),
    resources: list[str] = typer.Option(
        [], "--resources", help="Per-trial resources for this run, e.g. cpu=1,gpu=0."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the trials and the estimated cost; start nothing."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Require an existing experiment and continue it."
    ),
) -> None:
    """Run every trial of SPEC (variants x seeds, or a search) and print where results are.

    Re-running the same command continues an interrupted experiment: finished trials are not
    re-run, unfinished ones resume from their last checkpoint.
    """
    started = time.time()
    from ohem_tune.orchestration.plan import make_plan

    plan = make_plan(
        spec, profile, seeds, set_, tracking_uri, storage_path, experiment, only, resources
    )
    if dry_run:
        from ohem_tune.orchestration.summary import print_dry_run

        print_dry_run(plan, console, max_concurrent)
        return
    from ohem_tune.orchestration.driver import run_plan
    from ohem_tune.orchestration.summary import print_summary

    summary = run_plan(
        plan,
        address=address,
        max_concurrent=max_concurrent,
        resume=resume,
        console=console,
        command_start=started,
    )
    print_summary(summary, console)
    if not summary.complete or summary.count("FAILED"):
        raise SystemExit(1)  # not typer.Exit: the CLI runs click with standalone_mode=False
