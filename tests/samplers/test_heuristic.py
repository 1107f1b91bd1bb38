"""Heuristic (FRCN) sampler: documented fg/bg counts and IoU ranges."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.config import SamplerConfig
from ohem_tune.samplers import build_sampler
from tests.samplers.helpers import GivenLosses, targets_from

# image 0: 10 fg, 20 bg in [0.1, 0.5), 15 at IoU < 0.1 (5 of them at exactly 0)
IMAGE0 = (
    [0.5 + 0.04 * i for i in range(10)]
    + [0.1 + 0.02 * i for i in range(20)]
    + [0.0] * 5
    + [0.01 * i for i in range(10)]
)
# image 1: scarce RoIs: 2 fg, 3 bg in [0.1, 0.5), 4 below 0.1
IMAGE1 = [0.7, 0.95, 0.3, 0.2, 0.49, 0.05, 0.0, 0.0, 0.09]


def _select(bg_lo: float, name: str = "heuristic", b: int = 32):
    cfg = SamplerConfig(name=name, rois_per_batch=b, bg_lo=bg_lo)
    targets = targets_from([IMAGE0, IMAGE1])
    ranking = GivenLosses([0.0] * len(targets))
    torch.manual_seed(0)
    out = build_sampler(cfg, ims_per_batch=2).select(targets, ranking)
    assert ranking.calls == 0  # the heuristic never needs the read-only pass
    return targets, out


@pytest.mark.parametrize("bg_lo", [0.1, 0.0])
def test_heuristic_counts_and_iou_ranges(bg_lo: float):
    targets, out = _select(bg_lo)
    idx = out.indices
    assert len(set(idx.tolist())) == len(idx)  # without replacement
    iou, img = targets.max_iou[idx], targets.image_index[idx]
    # image 0: B/N = 16 -> round(0.25 * 16) = 4 fg and 12 bg
    assert int(((iou >= 0.5) & (img == 0)).sum()) == 4
    bg0 = iou[(iou < 0.5) & (img == 0)]
    assert len(bg0) == 12
    assert bool((bg0 >= bg_lo).all())
    # image 1: only 2 fg exist; bg fills up to what exists in [bg_lo, 0.5)
    n_bg1 = sum(bg_lo <= v < 0.5 for v in IMAGE1)
    assert int(((iou >= 0.5) & (img == 1)).sum()) == 2
    assert int(((iou < 0.5) & (img == 1)).sum()) == n_bg1
    assert len(idx) == 16 + 2 + n_bg1 < 32  # the minibatch may be smaller than B
    assert out.stats["train/num_selected"] == len(idx)
    assert out.stats["train/fg_fraction"] == pytest.approx(6 / len(idx))


def test_bg_lo_zero_reaches_low_iou_background():
    seen_low = False
    for seed in range(20):
        torch.manual_seed(seed)
        targets, out = _select(0.0)
        seen_low |= bool((targets.max_iou[out.indices] < 0.1).any())
    assert seen_low
    for seed in range(5):
        torch.manual_seed(seed)
        targets, out = _select(0.1)
        assert not bool((targets.max_iou[out.indices] < 0.1).any())
