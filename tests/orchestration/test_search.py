"""ASHA from the spec: its rungs fall where trials report the metric (at evaluations)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ohem_tune.orchestration.search import build_scheduler
from ohem_tune.spec.schema import SchedulerSpec


@pytest.mark.parametrize(
    ("grace", "eval_period", "aligned"),
    [(100, 100, 100), (150, 100, 200), (100, 5000, 5000), (10000, 5000, 10000), (100, 0, 100)],
)
def test_grace_period_is_raised_to_a_multiple_of_the_eval_period(grace, eval_period, aligned):
    sched = SchedulerSpec(type="asha", grace_period=grace)
    assert sched.grace_at_evaluations(eval_period) == aligned


def test_asha_rungs_of_the_paper_profile_are_evaluation_iterations():
    """ohem_hpo's paper profile: grace 100 in the spec, an evaluation every 5000 of 40000."""
    spec = SimpleNamespace(scheduler=SchedulerSpec(type="asha", grace_period=100))
    scheduler = build_scheduler(spec, max_iter=40000, eval_period=5000)
    milestones = sorted(m for m, _ in scheduler._brackets[0]._rungs)  # Ray-internal, read only
    assert milestones == [5000, 10000, 20000, 40000]  # with the spec's grace: 100, 200, ..., 25600
