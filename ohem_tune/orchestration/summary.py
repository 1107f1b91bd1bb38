"""What `ohem-tune run` prints: the --dry-run plan with its cost, and the end-of-run summary."""

from __future__ import annotations

import math
import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ohem_tune import tracking_keys as tk
from ohem_tune.orchestration.cost import estimate_trial, schedule_seconds
from ohem_tune.orchestration.outcomes import RunSummary
from ohem_tune.orchestration.plan import Plan, is_uri, trial_table_rows
from ohem_tune.orchestration.search import decision_metric


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600 * 1.5:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def local_slots(plan: Plan, max_concurrent: int | None) -> int:
    """Trials that fit at once on this machine's CPUs (GPU trials: see the cost line)."""
    res = plan.resources
    slots = max(1, math.floor((os.cpu_count() or 1) / res.cpu + 1e-9))
    cap = max_concurrent or res.max_concurrent
    return min(slots, cap) if cap else slots


def print_dry_run(plan: Plan, console: Console, max_concurrent: int | None = None) -> None:
    """The trial table (variant, seed, key hyperparameters, resources) and the estimated cost."""
    res = plan.resources
    spec = plan.spec
    console.print(
        f"[bold]{spec.name}[/] ({plan.spec_path}), profile [bold]{plan.profile or 'none'}[/]: "
        f"{plan.num_trials} trial(s); experiment '{plan.experiment}' at {plan.tracking_uri}; "
        f"checkpoints in {plan.exp_dir}"
        + (f", Tune's in {plan.tune_storage}" if is_uri(plan.storage) else ""),
        highlight=False,
    )
    costs = [estimate_trial(t.config, res) for t in plan.trials]
    width = console.width
    if not console.is_terminal:  # piped output: do not squeeze the table into 80 columns
        console.width = max(width, 160)
    try:
        console.print(_trial_table(plan, costs))
    finally:
        console.width = width
    search = spec.search_for(plan.profile)
    if plan.optuna and search is not None:
        space = Table(title=f"Optuna search: {search.num_samples} samples, "
                      f"{search.mode} {search.metric}")  # fmt: skip
        space.add_column("parameter")
        space.add_column("distribution")
        for key, param in search.params.items():
            space.add_row(key, param.describe())
        console.print(space)
    if spec.scheduler.type != "none":
        s = spec.scheduler
        eval_period = plan.eval_period
        grace = s.grace_at_evaluations(eval_period)
        raised = (
            f" (the spec's {s.grace_period}, raised to a multiple of train.eval_period "
            f"{eval_period}: ASHA decides at evaluations)"
            if grace != s.grace_period
            else ""
        )
        console.print(
            f"scheduler: ASHA on {s.mode} {s.metric}, grace period {grace} iterations{raised}, "
            f"reduction factor {s.reduction_factor:g}",
            highlight=False,
        )
    _print_selection(plan, console)
    durations = [c.seconds for c in costs]
    if plan.optuna:
        mean = sum(durations) / len(durations)
        durations = [mean] * plan.num_trials
    device = costs[0].device
    total = sum(durations)
    per_trial = f"{res.cpu:g} CPU" + (f" + {res.gpu:g} GPU" if res.gpu else "")
    if device == "gpu":
        gpu_hours = total * res.gpu / 3600
        slots_per_gpu = max(1, math.floor(1 / res.gpu + 1e-9)) if res.gpu <= 1 else 1
        console.print(
            f"estimated cost: {gpu_hours:.1f} GPU-hours ({per_trial} per trial, paper Titan X "
            f"sec/iter scaled); on 1 GPU ~{_duration(schedule_seconds(durations, slots_per_gpu))}"
            f", on 8 GPUs ~{_duration(schedule_seconds(durations, 8 * slots_per_gpu))}",
            highlight=False,
        )
    else:
        slots = local_slots(plan, max_concurrent)
        wall = schedule_seconds(durations, slots)
        console.print(
            f"estimated cost: {'at most ' if spec.scheduler.type != 'none' else ''}"
            f"{total / 3600:.2f} CPU-hours ({per_trial} per trial); "
            f"~{_duration(wall)} on this machine ({slots} trial(s) at once)",
            highlight=False,
        )
    _print_resume_state(plan, console)
    console.print("dry run: nothing was started.", style="dim")


def _print_selection(plan: Plan, console: Console) -> None:
    """Which split the searcher and scheduler select on (searches: val, never test)."""
    metric, _mode = decision_metric(plan.spec)
    if metric is None or not plan.trials:
        return
    cfg = plan.trials[0].config
    if metric.startswith("eval/" + tk.VAL_GROUP):
        where = (
            "the synthetic set's val split"
            if cfg.dataset.format == "synthetic"
            else f"dataset.val_split '{cfg.dataset.val_split}'"
        )
        console.print(
            f"selection: {metric} on the val split ({where}); each finished trial is also "
            f"evaluated once on the test split ({tk.FINAL_MAP})",
            highlight=False,
        )
    elif metric.startswith(("eval/", "final/")):
        console.print(
            f"selection: {metric} on the TEST split (search.allow_test_selection)",
            highlight=False,
        )


def _trial_table(plan: Plan, costs: list) -> Table:
    """One row per variant (its seeds listed), with the key hyperparameters and cost per trial."""
    title = "templates sampled by Optuna" if plan.optuna else "trials (variants x seeds)"
    table = Table(title=title)
    columns = ("variant", "seeds", "sampler", "backbone", "N", "B", "LR", "bg_lo", "iters",
               "train px", "test px", "CPU/GPU", "est./trial")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right" if col in ("N", "B", "iters") else "left")
    grouped: dict[str, list[int]] = {}
    first: dict[str, tuple[dict, float]] = {}
    for row, cost in zip(trial_table_rows(plan.trials), costs, strict=True):
        grouped.setdefault(row["variant"], []).append(row["seed"])
        first.setdefault(row["variant"], (row, cost.seconds))
    res = plan.resources
    for variant, seeds in grouped.items():
        row, seconds = first[variant]
        table.add_row(
            variant, ",".join(str(s) for s in seeds), row["sampler"], row["backbone"],
            str(row["N"]), str(row["B"]), f"{row['LR']:g}", f"{row['bg_lo']:g}",
            str(row["iters"]), row["scales"], row["test"], f"{res.cpu:g}/{res.gpu:g}",
            _duration(seconds),
        )  # fmt: skip
    return table


def _print_resume_state(plan: Plan, console: Console) -> None:
    """How many of the trials already finished (only for a local store that exists)."""
    uri = plan.tracking_uri
    if not uri.startswith("sqlite:///") or not Path(uri.removeprefix("sqlite:///")).is_file():
        return
    from ohem_tune.orchestration import tracking

    try:
        client = tracking.client(uri)
        found = client.get_experiment_by_name(plan.experiment)
        if found is None:
            return
        done = tracking.finished_trial_ids(tracking.trial_runs(uri, found.experiment_id))
    except Exception:  # a dry run never fails on tracking problems
        return
    ours = sum(1 for t in plan.trials if t.trial_id in done)
    if ours and not plan.optuna:
        console.print(f"{ours} of {len(plan.trials)} trials already finished: they will be skipped")


def print_summary(summary: RunSummary, console: Console) -> None:
    """Finished / failed / pruned counts, the best trial, where results are, what to run next."""
    counts = {s: summary.count(s) for s in ("FINISHED", "FAILED", "PRUNED")}
    rest = len(summary.outcomes) - sum(counts.values())
    line = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
    if rest:
        line += f", {rest} unfinished"
    if summary.already_finished:
        line += f" (+{summary.already_finished} finished earlier)"
    if not summary.complete:
        title = "[bold yellow]stopped early[/]"
    elif counts["FAILED"]:
        title = "[bold yellow]done, with failures[/]"
    else:
        title = "[bold green]done[/]"
    console.print(f"{title}: {line} in {_duration(summary.wall_seconds)}", highlight=False)
    for outcome in summary.outcomes:
        if outcome.status == "FAILED":
            console.print(
                f"  [red]failed[/] {escape(outcome.name)}: {escape(str(outcome.error))}",
                highlight=False,
            )
    best = summary.best
    if best is not None:
        measured = f"{summary.metric} {best.metric:.4f}"
        if summary.metric != tk.FINAL_MAP:  # a search selected on val: say so, then add test
            test = "n/a" if best.test_metric is None else f"{best.test_metric:.4f}"
            measured += f" (val split, selection), {tk.FINAL_MAP} {test} (test split)"
        console.print(
            f"best trial: {escape(best.name)} {measured} (run {best.run_id})",
            highlight=False,
        )
    util = summary.slot_utilisation
    first = summary.first_iteration_seconds
    if util is not None:
        line = f"slot utilisation {util:.2f} over {summary.slots} slot(s)"
        if first is not None:
            line += f"; first trial iteration {first:.1f} s after the command started"
        console.print(line, highlight=False)
    console.print(f"MLflow: {summary.tracking_uri} (experiment '{summary.experiment}')",
                  highlight=False)  # fmt: skip
    console.print(f"checkpoints and Tune state: {summary.exp_dir}", highlight=False)
    if not summary.complete:
        console.print("re-run the same command to continue where it stopped", highlight=False)
    console.print(f"next: {summary.report_command()}", highlight=False)
