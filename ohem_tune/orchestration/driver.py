"""`ohem-tune run`: spec -> validated trials -> Ray Tune (local or cluster) -> MLflow -> summary.

Order matters: everything that can be wrong with the input (spec, configs, resume contract,
tracking URI) is checked before Ray starts, so a mistake costs seconds, not a cluster.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from ohem_tune import __version__
from ohem_tune import tracking_keys as tk
from ohem_tune.config import Config
from ohem_tune.config.errors import suggest
from ohem_tune.errors import ConfigError, DataError, OhemTuneError, TrackingError
from ohem_tune.orchestration import keys as tr
from ohem_tune.orchestration import resume as resume_mod
from ohem_tune.orchestration import tracking
from ohem_tune.orchestration.search import selection_key
from ohem_tune.spec import Spec, TrialSpec, load_spec
from ohem_tune.spec.schema import ResourcesSpec

DEFAULT_STORAGE = "ray_results"
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


def quiet_env() -> None:
    """Environment defaults for the driver (set before Ray and MLflow are imported)."""
    import logging

    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # After Ctrl-C, Tune warns about every trial that never started: the summary says it once.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


_PATH_FIELDS = ("model.weights",)


@dataclass
class TrialOutcome:
    """How one trial of this invocation ended, as MLflow records it."""

    trial_id: str
    name: str
    variant: str
    seed: int
    status: str  # FINISHED | FAILED | PRUNED | RUNNING (interrupted) | NOT_STARTED
    run_id: str | None = None
    metric: float | None = None  # RunSummary.metric: final/mAP, or final/val/mAP (val search)
    test_metric: float | None = None  # final/mAP (the test split)
    error: str | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    first_iter_unix: float | None = None
    start_unix: float | None = None


@dataclass
class RunSummary:
    """What `ohem-tune run` prints at the end (and what tests and benchmarks read)."""

    spec_path: str
    experiment: str
    experiment_id: str
    tracking_uri: str
    exp_dir: Path
    parent_run_id: str | None
    outcomes: list[TrialOutcome] = field(default_factory=list)
    already_finished: int = 0
    wall_seconds: float = 0.0
    slots: int = 1
    command_start: float = 0.0
    interrupted: bool = False
    metric: str = tk.FINAL_MAP  # what `best` ranks by (selection_key: val for searches)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def best(self) -> TrialOutcome | None:
        done = [o for o in self.outcomes if o.status == "FINISHED" and o.metric is not None]
        return max(done, key=lambda o: o.metric) if done else None  # type: ignore[arg-type,return-value]

    @property
    def slot_utilisation(self) -> float | None:
        """Sum of trial compute time / (wall time x concurrent slots)."""
        busy = sum(o.seconds or 0.0 for o in self.outcomes)
        if not busy or not self.wall_seconds:
            return None
        return busy / (self.wall_seconds * max(1, self.slots))

    @property
    def first_iteration_seconds(self) -> float | None:
        """Time from the command's start to the first trial iteration."""
        firsts = [o.first_iter_unix for o in self.outcomes if o.first_iter_unix]
        return min(firsts) - self.command_start if firsts and self.command_start else None

    @property
    def complete(self) -> bool:
        return not self.interrupted and all(
            o.status in ("FINISHED", "FAILED", "PRUNED") for o in self.outcomes
        )

    def report_command(self) -> str:
        return f"ohem-tune report {self.spec_path} --tracking-uri {self.tracking_uri}"


@dataclass
class Plan:
    """A spec resolved for one invocation: trials, where they go, how they are tracked."""

    spec: Spec
    spec_path: str
    profile: str | None
    trials: list[TrialSpec]
    experiment: str
    tracking_uri: str
    exp_dir: Path
    overrides: tuple[str, ...] = ()
    # Every trial of the spec (the experiment's manifest); `trials` may be a subset (--only).
    all_trials: list[TrialSpec] | None = None

    @property
    def resources(self):
        return self.trials[0].resources

    @property
    def optuna(self) -> bool:
        return self.spec.search is not None and self.spec.search.uses_optuna

    @property
    def num_trials(self) -> int:
        """Trials this plan runs in all (Optuna: num_samples, else variants x points x seeds)."""
        return self.spec.search.num_samples if self.optuna else len(self.trials)  # type: ignore[union-attr]


def make_plan(
    spec_path: str | Path,
    profile: str | None = None,
    seeds: int | None = None,
    overrides: Sequence[str] = (),
    tracking_uri: str | None = None,
    storage_path: str | Path | None = None,
    experiment: str | None = None,
    only: Sequence[str] = (),
    resources: Sequence[str] = (),
) -> Plan:
    """Load and expand the spec, resolve the tracking URI and the experiment folder (no Ray).

    `only` runs a subset of the spec's variants (the experiment still records all of them, so a
    later run of the whole spec continues it); `resources` overrides the per-trial resources
    (`cpu=1`, `gpu=0`) for this invocation.
    """
    spec = load_spec(spec_path)
    all_trials = spec.expand(profile=profile, seeds=seeds, overrides=overrides)
    trials = select_variants(all_trials, only, str(spec_path))
    if resources:
        override = parse_resources(resources, spec_path)
        trials = [replace(t, resources=t.resources.model_copy(update=override)) for t in trials]
    chosen = trials[0].profile
    name = experiment or spec.tracking.experiment or spec.name
    uri = tracking.resolve_tracking_uri(tracking_uri or spec.tracking.uri)
    storage = Path(storage_path or DEFAULT_STORAGE).expanduser().resolve()
    exp_dir = storage / name / (chosen or "default")
    return Plan(
        spec, str(spec_path), chosen, trials, name, uri, exp_dir, tuple(overrides), all_trials
    )


def select_variants(trials: list[TrialSpec], only: Sequence[str], where: str) -> list[TrialSpec]:
    """The trials of the named variants (all when `only` is empty); unknown names are an error."""
    if not only:
        return trials
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    known = list(dict.fromkeys(t.variant.split("@", 1)[0] for t in trials))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"{where}: --only: unknown variant '{unknown[0]}'{suggest(unknown[0], known)}; "
            f"the spec's variants: {', '.join(known)}"
        )
    return [t for t in trials if t.variant.split("@", 1)[0] in names]


def parse_resources(items: Sequence[str], where: str | Path) -> dict[str, float]:
    """['cpu=1', 'gpu=0'] (or 'cpu=1,gpu=0') -> validated per-trial resource overrides."""
    update: dict[str, float] = {}
    for item in (part for entry in items for part in entry.split(",") if part.strip()):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in ("cpu", "gpu"):
            raise ConfigError(
                f"{where}: --resources {item!r}: expected cpu=N or gpu=N, "
                "e.g. --resources cpu=1,gpu=0"
            )
        try:
            update[key] = float(raw)
        except ValueError:
            raise ConfigError(f"{where}: --resources {key}: {raw!r} is not a number") from None
    try:
        ResourcesSpec(**update)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{where}: --resources {field}: {err['msg']}") from None
    return update


def absolute_paths(tree: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Make the config's local paths absolute: trials run in other working directories."""
    ds = tree.get("dataset", {})

    def fix(node: dict[str, Any], key: str) -> None:
        value = node.get(key)
        if value and not Path(value).is_absolute() and "://" not in str(value):
            node[key] = str((cwd / value).resolve())

    fix(ds, "root")
    fix(ds.get("synthetic", {}), "cache_dir")
    fix(ds.get("proposals", {}), "cache_dir")
    if not ds.get("root"):
        fix(ds.get("proposals", {}), "train_file")
        fix(ds.get("proposals", {}), "test_file")
    fix(tree.get("model", {}), "weights")
    return tree


def git_sha() -> str:
    """The commit of the working tree the package runs from ('' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        sha = out.stdout.strip()
        if sha:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=Path(__file__).resolve().parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return ""


def check_local_paths(trials: list[TrialSpec], spec_path: str) -> None:
    """On this machine, datasets and weights a trial names must exist (checked before Ray)."""
    for trial in trials:
        cfg = trial.config
        needed = [("dataset.root", cfg.dataset.root), ("model.weights", cfg.model.weights)]
        for field_name, path in needed:
            if path is not None and not Path(path).expanduser().exists():
                raise DataError(
                    f"{spec_path}: variant '{trial.variant}' (profile '{trial.profile}'): "
                    f"{field_name}: {path} does not exist; put the files there, point "
                    f"--set {field_name}=... at them, or use a profile that needs no data "
                    "(the default `local` profile uses the built-in synthetic set)"
                )


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


def connect_ray(address: str | None, resources_gpu: float) -> bool:
    """Connect to `address` or start a local Ray (returns True when this call started it)."""
    import ray

    if ray.is_initialized():
        return False
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
        if address:
            raise ConfigError(
                f"--address {address}: cannot connect to the Ray cluster ({exc}). Start it with "
                "`ray start --head`, pass its GCS address (HOST:6379), and export "
                "RAY_AUTH_MODE=token when the cluster uses token auth (the default)"
            ) from None
        raise
    return True


def check_cluster_tracking(uri: str) -> None:
    """A local store cannot be shared by nodes; an HTTP server must answer from every node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
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

    refs = {
        n["NodeID"]: probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(uri)
        for n in nodes
    }
    for node_id, ref in refs.items():
        error = ray.get(ref, timeout=60)
        if error:
            raise TrackingError(f"from Ray node {node_id[:12]}: {error}")


def cluster_slots(resources: Any) -> int:
    """How many trials fit at once on the cluster with these per-trial resources."""
    import math

    import ray

    total = ray.cluster_resources()
    fits = [math.floor(total.get("CPU", 0) / resources.cpu + 1e-9)]
    if resources.gpu:
        fits.append(math.floor(total.get("GPU", 0) / resources.gpu + 1e-9))
    slots = max(1, min(fits))
    if resources.max_concurrent:
        slots = min(slots, resources.max_concurrent)
    return slots


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
    quiet_env()
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
        done_count = sum(1 for t in finished if t in _optuna_ids(existing, plan))
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
        summary.outcomes = _outcomes_from_mlflow(plan, experiment_id, [], {})
        summary.wall_seconds = time.time() - command_start
        return summary

    from ohem_tune.orchestration.cost import estimate_trial

    # Longest first: the last trials to start are short, so slots do not idle at the end.
    pending.sort(key=lambda t: -estimate_trial(t.config, resources).seconds)
    # Ray starts (seconds) while the synthetic data is generated (seconds): overlap them.
    with ThreadPoolExecutor(max_workers=1) as pool:
        data_ready = pool.submit(prepare_data, pending or plan.trials)
        started_ray = connect_ray(address, resources.gpu)
        data_ready.result()
    try:
        check_cluster_tracking(plan.tracking_uri)
        summary.slots = cluster_slots(resources)
        parent_tags = {
            tk.TAG_SPEC: Path(plan.spec_path).name,
            tk.TAG_SPEC_HASH: spec.spec_hash(),
            tk.TAG_PROFILE: plan.profile or "",
            tk.TAG_INVOCATION: _invocation_name(plan),
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
            results = _fit(plan, pending, todo, resources, experiment_id, parent_id, parent_tags,
                           console, summary)  # fmt: skip
            summary.outcomes = _outcomes_from_mlflow(plan, experiment_id, pending, results)
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


def _invocation_name(plan: Plan) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{plan.experiment}-{plan.profile or 'default'}-{stamp}"


def _optuna_ids(existing: dict[str, list[tracking.RunRecord]], plan: Plan) -> set[str]:
    """Trial ids of earlier runs of this plan's variants (Optuna trials have sampled ids)."""
    names = {t.variant for t in plan.trials}
    return {tid for tid, recs in existing.items() if any(r.variant in names for r in recs)}


def _fit(
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

    from ohem_tune.orchestration import trainable as tr
    from ohem_tune.orchestration.progress import ProgressTable
    from ohem_tune.orchestration.search import build_scheduler, build_searcher, decision_metric

    spec = plan.spec
    cwd = Path.cwd()
    common = {k: v for k, v in parent_tags.items() if k != tk.TAG_INVOCATION}
    metric, _mode = decision_metric(spec)
    if plan.optuna:
        templates = plan.trials
        payloads = [
            {**tr.trial_payload(t, t.variant), "config": absolute_paths(
                t.config.model_dump(mode="json"), cwd)}
            for t in templates
        ]  # fmt: skip
        search_keys = list(spec.search.params)  # type: ignore[union-attr]
    else:
        templates = pending
        payloads = [
            {**tr.trial_payload(t, f"{t.variant}-s{t.seed}"), "config": absolute_paths(
                t.config.model_dump(mode="json"), cwd)}
            for t in pending
        ]  # fmt: skip
        search_keys = []
    max_iter = max(t.config.train.max_iter for t in templates)
    eval_only = metric is not None
    ctx = tr.TrialContext(
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
    )
    trainable = tune.with_resources(
        tune.with_parameters(tr.trial_main, ctx=ctx),
        {"cpu": resources.cpu, "gpu": resources.gpu},
    )
    if plan.optuna:
        flat_templates = [t.config.flat() for t in templates]
        points = _unfinished_points(plan, experiment_id)
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
            f"{k.rsplit('.', 1)[-1]}={tr._short(config[k])}" for k in search_keys if k in config
        )
        return f"{p['variant']}[{vals}]", int(p["config"]["train"]["max_iter"])

    def dirname(trial: Any) -> str:
        return f"{name_of(trial.config)[0][:60]}-{trial.trial_id}".replace("/", "_")

    progress = ProgressTable(console, name_of, metric=metric or tk.MAP)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            num_samples=num_samples,
            search_alg=searcher,
            scheduler=build_scheduler(spec, max_iter),
            max_concurrent_trials=resources.max_concurrent,
            # Reusing a trial's process saves ~5 s of imports per trial, but Ray cannot reuse
            # one whose trial a scheduler stopped mid-run: then every trial gets its own.
            reuse_actors=spec.scheduler.type == "none",
            trial_name_creator=lambda t: name_of(t.config)[0][:80],
            trial_dirname_creator=dirname,
        ),
        run_config=tune.RunConfig(
            name=_invocation_name(plan),
            storage_path=str(plan.exp_dir / "tune"),
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
    statuses = _tune_statuses(grid)
    if any(status not in ("TERMINATED", "ERROR") for status in statuses.values()):
        summary.interrupted = True  # e.g. Ctrl-C: Tune returns with trials still running
    out: dict[str, dict[str, Any]] = {}
    for result in grid:
        metrics = dict(result.metrics or {})
        tid = metrics.get(tr.TRIAL_ID)
        if tid:
            out[str(tid)] = metrics
            if not summary.interrupted and statuses.get(str(tid)) in ("TERMINATED", "ERROR"):
                _settle_run(plan.tracking_uri, metrics, result.error)
    return out


def _tune_statuses(grid: Any) -> dict[str, str]:
    """Our trial id -> Tune's final trial status (TERMINATED, ERROR, or still RUNNING/PENDING)."""
    analysis = getattr(grid, "_experiment_analysis", None)
    out: dict[str, str] = {}
    for i, trial in enumerate(getattr(analysis, "trials", None) or []):
        tid = (trial.last_result or {}).get(tr.TRIAL_ID) or f"<not started {i}>"
        out[str(tid)] = str(trial.status)
    return out


def _settle_run(uri: str, metrics: dict[str, Any], error: BaseException | None) -> None:
    """End a trial's MLflow run that Tune ended before the trial could (no zombie RUNNING runs).

    Ray terminates a stopped trial's process right after the stop, which can cut the trial's own
    `finally` short; the driver then records what Tune decided.
    """
    run_id = metrics.get(tr.RUN_ID)
    if not run_id:
        return
    run = tracking.with_retries(lambda: tracking.client(uri).get_run(run_id))
    if run.info.status != "RUNNING":
        return
    if error is not None:
        tracking.end_run(
            uri,
            run_id,
            tracking.STATUS_FAILED,
            {tk.TAG_STATUS: tracking.STATUS_FAILED, tk.TAG_ERROR: str(error)[:4000]},
        )
    elif metrics.get(tr.STATUS) == tracking.STATUS_FINISHED:
        tracking.end_run(
            uri, run_id, tracking.STATUS_FINISHED, {tk.TAG_STATUS: tracking.STATUS_FINISHED}
        )
    else:  # stopped by the scheduler
        tracking.end_run(uri, run_id, tracking.STATUS_PRUNED,
                         {tk.TAG_STATUS: tracking.STATUS_PRUNED})  # fmt: skip


def _unfinished_points(plan: Plan, experiment_id: str) -> list[dict[str, Any]]:
    """Optuna points of interrupted trials, evaluated first so they resume (not re-sampled)."""
    import json

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


def _outcomes_from_mlflow(
    plan: Plan,
    experiment_id: str,
    pending: list[TrialSpec],
    results: dict[str, dict[str, Any]],
) -> list[TrialOutcome]:
    """This invocation's trials as MLflow has them (the source of truth for statuses)."""
    runs = tracking.trial_runs(plan.tracking_uri, experiment_id)
    wanted: list[tuple[str, str, str, int]] = [
        (t.trial_id, f"{t.variant}-s{t.seed}", t.variant, t.seed) for t in pending
    ]
    if plan.optuna:
        wanted = [(tid, tid, "", 0) for tid in results]
    outcomes = []
    metric_key = selection_key(plan.spec)
    for trial_id, name, variant, seed in wanted:
        recs = runs.get(trial_id, [])
        rec = next((r for r in recs if r.mlflow_status == "FINISHED"), recs[0] if recs else None)
        result = results.get(trial_id, {})
        status = "NOT_STARTED" if rec is None else rec.status
        outcomes.append(
            TrialOutcome(
                trial_id=trial_id,
                name=name if not plan.optuna or rec is None else rec.run_name or trial_id,
                variant=variant or (rec.variant if rec else ""),
                seed=seed,
                status=status,
                run_id=rec.run_id if rec else None,
                metric=rec.metrics.get(metric_key) if rec else None,
                test_metric=rec.metrics.get(tk.FINAL_MAP) if rec else None,
                error=_error_of(plan, rec) if rec and status == "FAILED" else None,
                seconds=result.get(tr.TRIAL_SECONDS),
                cpu_seconds=result.get(tr.TRIAL_CPU_SECONDS),
                first_iter_unix=result.get(tr.FIRST_ITER),
                start_unix=result.get(tr.TRIAL_START),
            )
        )
    return outcomes


def _error_of(plan: Plan, rec: tracking.RunRecord) -> str | None:
    run = tracking.with_retries(lambda: tracking.client(plan.tracking_uri).get_run(rec.run_id))
    return run.data.tags.get(tk.TAG_ERROR)


def trial_table_rows(trials: list[TrialSpec]) -> list[dict[str, Any]]:
    """Key hyperparameters of each trial, for --dry-run."""
    rows = []
    for t in trials:
        c: Config = t.config
        rows.append(
            {
                "variant": t.variant,
                "seed": t.seed,
                "sampler": c.sampler.name,
                "backbone": c.model.backbone,
                "N": c.solver.ims_per_batch,
                "B": c.sampler.rois_per_batch,
                "LR": c.solver.lr,
                "bg_lo": c.sampler.bg_lo,
                "iters": c.train.max_iter,
                "scales": "/".join(str(s) for s in c.input.scales),
                "test": "/".join(str(s) for s in c.test.scales)
                + ("+B" if c.test.iterative_bbox else ""),
                "trial_id": t.trial_id,
            }
        )
    return rows


__all__ = [
    "OhemTuneError",
    "Plan",
    "RunSummary",
    "TrialOutcome",
    "make_plan",
    "run_plan",
    "trial_table_rows",
]
