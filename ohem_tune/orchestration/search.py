"""Spec search/scheduler -> Ray Tune objects: an Optuna define-by-run space and ASHA."""

from __future__ import annotations

from typing import Any

from ohem_tune import tracking_keys as tk
from ohem_tune.spec.schema import Spec
from ohem_tune.spec.search import SearchParam


class OptunaSpace:
    """Define-by-run space: samples each active parameter in spec order (conditions honoured).

    A class (not a closure) so Tune can pickle it into the experiment state.
    """

    def __init__(self, params: dict[str, SearchParam], templates: list[dict[str, Any]]) -> None:
        self.params = params
        self.templates = templates  # flat config of each variant (for `when` on config fields)

    def __call__(self, trial: Any) -> dict[str, Any]:
        index = 0
        if len(self.templates) > 1:
            index = trial.suggest_categorical("variant_index", list(range(len(self.templates))))
        point: dict[str, Any] = dict(self.templates[index])
        for key, param in self.params.items():
            if not param.active(point):
                continue
            point[key] = _suggest(trial, key, param)
        return {"variant_index": index}


def _suggest(trial: Any, key: str, param: SearchParam) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(key, param.choices)
    if param.type == "int":
        step = int(param.step) if param.step else 1
        return trial.suggest_int(key, int(param.low), int(param.high), step=step, log=param.log)
    return trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)


def build_searcher(
    spec: Spec,
    profile: str | None,
    templates: list[dict[str, Any]],
    points: list[dict[str, Any]],
):
    """OptunaSearch (TPE, seeded) over the spec's params; `points` are evaluated first."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    search = spec.search_for(profile)
    assert search is not None
    sampler = optuna.samplers.TPESampler(seed=search.seed)
    metric, mode = decision_metric(spec)
    return OptunaSearch(
        space=OptunaSpace(search.params, templates),
        metric=metric,
        mode=mode,
        sampler=sampler,
        points_to_evaluate=points or None,
    )


def build_scheduler(spec: Spec, max_iter: int, eval_period: int):
    """ASHA on the spec's metric at the trainer's iteration count, or None; its grace period
    aligned to the evaluations (`SchedulerSpec.grace_at_evaluations`)."""
    sched = spec.scheduler
    if sched.type == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="iteration",
        metric=sched.metric,
        mode=sched.mode,
        # +1: ASHA stops a trial at t >= max_t, and a stop on the last report would kill the
        # trial's process before it logs its final metrics.
        max_t=(sched.max_t or max_iter) + 1,
        grace_period=sched.grace_at_evaluations(eval_period),
        reduction_factor=sched.reduction_factor,
        brackets=sched.brackets,
    )


def selection_key(spec: Spec) -> str:
    """The final/* key a run's "best trial" is picked by: the final alias of a val metric the
    search decides on (final/val/mAP), else final/mAP (the test split's, as before)."""
    metric, _mode = decision_metric(spec)
    if metric is not None and metric.startswith("eval/" + tk.VAL_GROUP):
        return "final/" + metric.removeprefix("eval/")
    return tk.FINAL_MAP


def decision_metric(spec: Spec) -> tuple[str | None, str]:
    """The (metric, mode) Tune decides on: the scheduler's, else the search's, else none."""
    if spec.search is not None and spec.search.uses_optuna:
        return spec.search.metric, spec.search.mode
    if spec.scheduler.type != "none":
        return spec.scheduler.metric, spec.scheduler.mode
    return None, "max"
