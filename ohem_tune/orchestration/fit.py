"""The Ray Tune fit of one invocation: trial payloads, the Tuner, and what it returned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from ohem_tune import tracking_keys as tk
from ohem_tune.orchestration import keys as tr
from ohem_tune.orchestration import tracking
from ohem_tune.orchestration.outcomes import RunSummary, settle_run
from ohem_tune.orchestration.plan import Plan, absolute_paths, invocation_name, is_uri
from ohem_tune.spec import TrialSpec


def fit(
    plan: Plan,
    pending: list[TrialSpec],
    todo: int,
    resources: Any,
    experiment_id: str,
    parent_id: str,
    parent_tags: dict[str, str],
    console: Console,
    summary: RunSummary,
) -> dict[str, dict[str, Any]]:
    """Build the Tuner and run it; returns the last result of each trial by our trial id."""
    from ray import tune

    from ohem_tune.orchestration import trainable
    from ohem_tune.orchestration.progress import ProgressTable
    from ohem_tune.orchestration.search import build_scheduler, build_searcher, decision_metric

    spec = plan.spec
    cwd = Path.cwd()
    common = {k: v for k, v in parent_tags.items() if k != tk.TAG_INVOCATION}
    metric, _mode = decision_metric(spec)
    if plan.optuna:
        templates = plan.trials
        payloads = [
            {**trainable.trial_payload(t, t.variant), "config": absolute_paths(
                t.config.model_dump(mode="json"), cwd)}
            for t in templates
        ]  # fmt: skip
        search_keys = list(spec.search.params)  # type: ignore[union-attr]
    else:
        templates = pending
        payloads = [
            {**trainable.trial_payload(t, f"{t.variant}-s{t.seed}"), "config": absolute_paths(
                t.config.model_dump(mode="json"), cwd)}
            for t in pending
        ]  # fmt: skip
        search_keys = []
    max_iter = max(t.config.train.max_iter for t in templates)
    eval_only = metric is not None
    ctx = trainable.TrialContext(
        tracking_uri=plan.tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_id,
        trials_dir=str(plan.exp_dir / "trials"),
        payloads=payloads,
        search_keys=search_keys,
        report_every=spec.report_every,
        eval_reports_only=eval_only,
        metric=metric,
        hooks=list(spec.hooks),
        common_tags=common,
        cpu=resources.cpu,
        scheduler=spec.scheduler.type != "none",
        # trials/ sits beside tune/ on a filesystem storage: a Tune copy would only double it
        tune_checkpoints=is_uri(plan.storage),
    )
    runnable = tune.with_resources(
        tune.with_parameters(trainable.trial_main, ctx=ctx),
        {"cpu": resources.cpu, "gpu": resources.gpu},
    )
    if plan.optuna:
        flat_templates = [t.config.flat() for t in templates]
        points = unfinished_points(plan, experiment_id)
        searcher = build_searcher(spec, plan.profile, flat_templates, points)
        param_space: dict[str, Any] = {}
        num_samples = todo
    else:
        searcher = None
        param_space = {"trial_index": tune.grid_search(list(range(len(pending))))}
        num_samples = 1

    def name_of(config: dict[str, Any]) -> tuple[str, int]:
        if "trial_index" in config:
            p = payloads[int(config["trial_index"])]
            return p["run_name"], int(p["config"]["train"]["max_iter"])
        p = payloads[int(config.get("variant_index", 0))]
        vals = ",".join(
            f"{k.rsplit('.', 1)[-1]}={trainable._short(config[k])}"
            for k in search_keys
            if k in config
        )
        return f"{p['variant']}[{vals}]", int(p["config"]["train"]["max_iter"])

    def dirname(trial: Any) -> str:
        return f"{name_of(trial.config)[0][:60]}-{trial.trial_id}".replace("/", "_")

    progress = ProgressTable(console, name_of, metric=metric or tk.MAP)
    tuner = tune.Tuner(
        runnable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            num_samples=num_samples,
            search_alg=searcher,
            scheduler=build_scheduler(spec, max_iter, plan.eval_period),
            max_concurrent_trials=resources.max_concurrent,
            # Reusing a trial's process saves ~5 s of imports per trial, but Ray cannot reuse
            # one whose trial a scheduler stopped mid-run: then every trial gets its own.
            reuse_actors=spec.scheduler.type == "none",
            trial_name_creator=lambda t: name_of(t.config)[0][:80],
            trial_dirname_creator=dirname,
        ),
        run_config=tune.RunConfig(
            name=invocation_name(plan),
            storage_path=plan.tune_storage,  # a cloud URI reaches Tune untouched
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[progress.callback],
            verbose=0,
        ),
    )
    console.print(
        f"running {todo} trial(s) of [bold]{plan.experiment}[/] "
        f"(profile {plan.profile or 'none'}) on {summary.slots} slot(s) of "
        f"{resources.cpu:g} CPU / {resources.gpu:g} GPU; MLflow: {plan.tracking_uri}",
        highlight=False,
    )
    try:
        with progress:
            grid = tuner.fit()
    except KeyboardInterrupt:
        summary.interrupted = True
        return {}
    statuses = tune_statuses(grid)
    if any(status not in ("TERMINATED", "ERROR") for status in statuses.values()):
        summary.interrupted = True  # e.g. Ctrl-C: Tune returns with trials still running
    out: dict[str, dict[str, Any]] = {}
    for result in grid:
        metrics = dict(result.metrics or {})
        tid = metrics.get(tr.TRIAL_ID)
        if tid:
            out[str(tid)] = metrics
            if not summary.interrupted and statuses.get(str(tid)) in ("TERMINATED", "ERROR"):
                settle_run(plan.tracking_uri, metrics, result.error)
    return out


def tune_statuses(grid: Any) -> dict[str, str]:
    """Our trial id -> Tune's final trial status (TERMINATED, ERROR, or still RUNNING/PENDING)."""
    analysis = getattr(grid, "_experiment_analysis", None)
    out: dict[str, str] = {}
    for i, trial in enumerate(getattr(analysis, "trials", None) or []):
        tid = (trial.last_result or {}).get(tr.TRIAL_ID) or f"<not started {i}>"
        out[str(tid)] = str(trial.status)
    return out


def unfinished_points(plan: Plan, experiment_id: str) -> list[dict[str, Any]]:
    """Optuna points of interrupted trials, evaluated first so they resume (not re-sampled)."""
    client = tracking.client(plan.tracking_uri)
    runs = tracking.with_retries(
        lambda: client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tk.TAG_ROLE}` = 'trial' and attributes.status != 'FINISHED'",
            max_results=1000,
        )
    )
    names = [t.variant for t in plan.trials]
    points = []
    for run in runs:
        raw = run.data.tags.get(tk.TAG_SEARCH_POINT)
        status = run.data.tags.get(tk.TAG_STATUS)
        variant = run.data.tags.get(tk.TAG_VARIANT)
        if raw and status == "RUNNING" and variant in names:
            point = json.loads(raw)
            if len(names) > 1:
                point["variant_index"] = names.index(variant)
            points.append(point)
    return points
