"""`ohem-tune run`: spec -> validated trials -> Ray Tune (local or cluster) -> MLflow -> summary.

Order matters: everything that can be wrong with the input (spec, configs, resume contract,
tracking URI) is checked before Ray starts, and everything that can be wrong with the cluster
(tracking server and checkpoint storage seen from every node) before any trial starts, so a
mistake costs seconds, not a cluster. The steps live in `plan`, `cluster`, `fit` and `outcomes`.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console

from ohem_tune import __version__
from ohem_tune import tracking_keys as tk
from ohem_tune.orchestration import cluster, tracking
from ohem_tune.orchestration import resume as resume_mod
from ohem_tune.orchestration.fit import fit
from ohem_tune.orchestration.outcomes import RunSummary, optuna_ids, outcomes_from_mlflow
from ohem_tune.orchestration.plan import Plan, check_local_paths, invocation_name
from ohem_tune.orchestration.search import selection_key
from ohem_tune.spec import TrialSpec


def run_plan(
    plan: Plan,
    address: str | None = None,
    max_concurrent: int | None = None,
    resume: bool = False,
    console: Console | None = None,
    command_start: float | None = None,
) -> RunSummary:
    """Run (or continue) the plan's trials on Ray Tune; returns the summary from MLflow."""
    command_start = command_start or time.time()
    console = console or Console()
    cluster.quiet_env()
    spec = plan.spec
    resources = plan.resources
    if max_concurrent is not None:
        resources = resources.model_copy(update={"max_concurrent": max_concurrent})

    if address is None:  # a cluster's nodes may see other files than the driver
        check_local_paths(plan.trials, plan.spec_path)
    search_def = {
        "search": spec.search.model_dump(mode="json") if spec.search else None,
        "scheduler": spec.scheduler.model_dump(mode="json"),
    }
    manifest = resume_mod.Manifest.build(
        spec.name, plan.spec_path, plan.profile, plan.all_trials or plan.trials, search_def
    )
    continuing = resume_mod.check_or_write(plan.exp_dir, manifest, resume, plan.experiment)
    tracking.check_reachable(plan.tracking_uri)
    experiment_id = tracking.ensure_experiment(plan.tracking_uri, plan.experiment)
    existing = tracking.trial_runs(plan.tracking_uri, experiment_id)
    finished = tracking.finished_trial_ids(existing)

    if plan.optuna:
        done_count = sum(1 for t in finished if t in optuna_ids(existing, plan))
        pending: list[TrialSpec] = []
        todo = max(0, plan.num_trials - done_count)
    else:
        pending = [t for t in plan.trials if t.trial_id not in finished]
        done_count = len(plan.trials) - len(pending)
        todo = len(pending)
    summary = RunSummary(
        plan.spec_path,
        plan.experiment,
        experiment_id,
        plan.tracking_uri,
        plan.exp_dir,
        None,
        already_finished=done_count,
        command_start=command_start,
        metric=selection_key(plan.spec),
    )
    if continuing or done_count:
        console.print(
            f"resuming experiment [bold]{plan.experiment}[/] ({plan.exp_dir}): "
            f"{done_count} trial(s) finished earlier, {todo} to run or continue",
            highlight=False,
        )
    if todo == 0:
        summary.outcomes = outcomes_from_mlflow(plan, experiment_id, [], {})
        summary.wall_seconds = time.time() - command_start
        return summary

    from ohem_tune.orchestration.cost import estimate_trial

    # Longest first: the last trials to start are short, so slots do not idle at the end.
    pending.sort(key=lambda t: -estimate_trial(t.config, resources).seconds)
    # Ray starts (seconds) while the synthetic data is generated (seconds): overlap them.
    with ThreadPoolExecutor(max_workers=1) as pool:
        data_ready = pool.submit(prepare_data, pending or plan.trials)
        started_ray = cluster.connect_ray(address, resources.gpu)
        data_ready.result()
    try:
        cluster.check_cluster_tracking(plan.tracking_uri)
        if address is not None:  # a local Ray's trials share the driver's disk
            cluster.require_shared_storage(plan.storage)
        where = f"the Ray cluster at {address}" if address else "the local Ray"
        summary.slots = cluster.cluster_slots(resources, where)
        parent_tags = {
            tk.TAG_SPEC: Path(plan.spec_path).name,
            tk.TAG_SPEC_HASH: spec.spec_hash(),
            tk.TAG_PROFILE: plan.profile or "",
            tk.TAG_INVOCATION: invocation_name(plan),
            tk.TAG_GIT_SHA: git_sha(),
            tk.TAG_VERSION: __version__,
            tk.TAG_HOST: tracking.host_name(),
        }
        parent_id = tracking.start_parent_run(
            plan.tracking_uri, experiment_id, parent_tags[tk.TAG_INVOCATION], parent_tags
        )
        summary.parent_run_id = parent_id
        status = tracking.STATUS_FAILED
        try:
            results = fit(plan, pending, todo, resources, experiment_id, parent_id, parent_tags,
                          console, summary)  # fmt: skip
            summary.outcomes = outcomes_from_mlflow(plan, experiment_id, pending, results)
            summary.wall_seconds = time.time() - command_start
            if summary.complete:
                status = tracking.STATUS_FINISHED
        finally:
            tracking.end_run(plan.tracking_uri, parent_id, status, {tk.TAG_STATUS: status})
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return summary


def prepare_data(trials: list[TrialSpec]) -> None:
    """Generate each distinct synthetic dataset once, before trials race to build it."""
    from ohem_tune.data.build import synthetic_root

    seen: set[str] = set()
    for trial in trials:
        cfg = trial.config
        if cfg.dataset.format != "synthetic":
            continue
        key = cfg.dataset.synthetic.model_dump_json()
        if key not in seen:
            seen.add(key)
            synthetic_root(cfg)


def git_sha() -> str:
    """The commit of the working tree the package runs from ('' outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip()
        if sha:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return ""


__all__ = ["run_plan"]
