"""How an invocation ended, read from MLflow (the source of truth for trial statuses).

`TrialOutcome` and `RunSummary` are what `ohem-tune run` prints and tests and benchmarks read;
`settle_run` ends a trial's MLflow run that Ray cut short; `outcomes_from_mlflow` builds the
outcomes of this invocation's trials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ohem_tune import tracking_keys as tk
from ohem_tune.orchestration import keys as tr
from ohem_tune.orchestration import tracking
from ohem_tune.orchestration.plan import Plan
from ohem_tune.orchestration.search import selection_key
from ohem_tune.spec import TrialSpec


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


def settle_run(uri: str, metrics: dict[str, Any], error: BaseException | None) -> None:
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


def optuna_ids(existing: dict[str, list[tracking.RunRecord]], plan: Plan) -> set[str]:
    """Trial ids of earlier runs of this plan's variants (Optuna trials have sampled ids)."""
    names = {t.variant for t in plan.trials}
    return {tid for tid, recs in existing.items() if any(r.variant in names for r in recs)}


def outcomes_from_mlflow(
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
