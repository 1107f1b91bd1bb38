"""Deferred train/* statistics read like .item() per value; phase clock boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ohem_tune import tracking_keys as K
from ohem_tune.engine.period import PeriodStats
from ohem_tune.engine.phases import PHASES, PhaseClock
from ohem_tune.errors import TrainingError


def _micro(loss: float, selected: float, fg: torch.Tensor) -> dict:
    t = torch.tensor(loss, dtype=torch.float32)
    return {K.LOSS: t, K.LOSS_CLS: t * 0.25, K.LOSS_BBOX: t * 0.75, K.FG_FRACTION: fg,
            K.NUM_SELECTED: selected, K.SELECTED_LOSS: t / 3}  # fmt: skip


def test_values_read_at_once_equal_item_per_value_and_the_same_means():
    gen = torch.Generator().manual_seed(0)
    period, expected = PeriodStats(), []
    for it in (1, 2, 3):
        micro = []
        for _ in range(2):  # iter_size 2: two micro-batches per update
            fg = torch.randint(0, 128, (), generator=gen).double() / 128
            micro.append(_micro(float(torch.rand((), generator=gen)) * 3, 128.0, fg))
        # what the trainer computed before: .item() per value, mean over micro-batches
        items = [{k: float(v.item()) if isinstance(v, torch.Tensor) else v for k, v in m.items()}
                 for m in micro]  # fmt: skip
        row = {k: float(np.mean([m[k] for m in items])) for k in items[0]}
        row[K.NUM_SELECTED] = float(np.sum([m[K.NUM_SELECTED] for m in items]))
        row[K.LR] = 0.01 * it
        expected.append(row)
        period.add(it, micro, {K.LR: 0.01 * it})
    period.read()
    assert period.iteration(2) == expected[1]
    means = period.means()
    for key in expected[0]:
        want = expected[-1][key] if key == K.LR else float(np.mean([r[key] for r in expected]))
        assert means[key] == want, key  # exactly: not approximately
    assert means[K.NUM_SELECTED] == 256.0
    assert period.means() == {}  # a period is forgotten once its means are taken


def test_first_non_finite_loss_is_named_with_its_iteration():
    period = PeriodStats()
    fg = torch.tensor(0.25, dtype=torch.float64)
    period.add(7, [_micro(1.0, 4.0, fg)], {})
    period.add(8, [_micro(float("nan"), 4.0, fg)], {})
    period.add(9, [_micro(float("inf"), 4.0, fg)], {})
    with pytest.raises(TrainingError, match=r"^non-finite loss at iteration 8 \(loss_cls=nan"):
        period.read()


def test_phase_clock_splits_an_iteration_into_its_phases():
    clock = PhaseClock(torch.device("cpu"))
    clock.start()
    for phase in ("data", "forward", "ranking", "forward", "backward", "backward"):
        clock.mark(phase)
    seconds = clock.seconds()
    assert set(seconds) == set(PHASES) and all(s >= 0 for s in seconds.values())
    clock.start()
    clock.mark("data")
    assert clock.seconds()["ranking"] == 0.0  # a new iteration starts from zero
