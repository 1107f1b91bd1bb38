"""The --dry-run cost model: monotone in the budget, ordered like the paper's measurements."""

from __future__ import annotations

import pytest

from ohem_tune.config import build_config
from ohem_tune.orchestration.cost import estimate_trial, schedule_seconds
from ohem_tune.spec import ResourcesSpec

CPU = ResourcesSpec(cpu=1, gpu=0)
GPU = ResourcesSpec(cpu=4, gpu=1)


def cfg(**sections):
    return build_config(sections)


def test_longest_first_schedule():
    assert schedule_seconds([], 2) == 0
    # greedy longest-first (what Ray does with trials queued longest first): 3|3, 2|2, then 2 -> 7
    assert schedule_seconds([3, 3, 2, 2, 2], 2) == 7
    assert schedule_seconds([5, 1, 1], 4) == 5


def test_cost_grows_with_iterations_and_ohem_costs_more():
    short = estimate_trial(cfg(train={"max_iter": 100}), CPU)
    long = estimate_trial(cfg(train={"max_iter": 200}), CPU)
    ohem = estimate_trial(cfg(train={"max_iter": 200}, sampler={"name": "ohem"}), CPU)
    assert long.seconds > short.seconds and ohem.seconds > long.seconds
    assert long.train_seconds == pytest.approx(2 * short.train_seconds)


def test_approximate_ranking_is_priced_between_the_heuristic_and_exact_ohem_on_cpu():
    small = {"backbone": "small_vgg16"}
    frcn = estimate_trial(cfg(model=small), CPU)
    exact = estimate_trial(cfg(model=small, sampler={"name": "ohem"}), CPU)
    approx = estimate_trial(cfg(model=small, sampler={"name": "ohem", "ranking": "channels"}), CPU)
    assert frcn.sec_per_iter < approx.sec_per_iter < exact.sec_per_iter


def test_gpu_estimate_keeps_the_papers_ohem_over_heuristic_ratio():
    frcn = estimate_trial(cfg(model={"backbone": "vgg16"}), GPU)
    ohem = estimate_trial(cfg(model={"backbone": "vgg16"}, sampler={"name": "ohem"}), GPU)
    assert frcn.device == "gpu"
    assert ohem.sec_per_iter / frcn.sec_per_iter == pytest.approx(0.87 / 0.57)
