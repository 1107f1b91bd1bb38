"""The sync-saving forms of the samplers' per-image steps equal the per-image loops they replace."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.config import SamplerConfig
from ohem_tune.samplers import build_sampler
from ohem_tune.samplers.ohem import top_per_image
from ohem_tune.tracking_keys import FG_FRACTION, NUM_SELECTED
from tests.samplers.helpers import GivenLosses, targets_from


def _random_targets(seed: int, sizes: list[int]):
    gen = torch.Generator().manual_seed(seed)
    return targets_from([torch.rand(n, generator=gen).tolist() for n in sizes])


@pytest.mark.parametrize("sizes", [[40, 25], [30, 0, 17], [1], [12, 9, 33, 5]])
def test_per_image_candidates_equal_nonzero_per_image(sizes: list[int]):
    targets = _random_targets(sum(sizes), sizes)
    sampler = build_sampler(SamplerConfig(name="heuristic", bg_lo=0.1), len(sizes))
    fg_mask, bg_mask = sampler.fg_bg_masks(targets)
    got = sampler.per_image_candidates(targets, fg_mask, bg_mask)
    assert len(got) == len(sizes)
    for i, (fg, bg) in enumerate(got):
        in_image = targets.image_index == i
        assert torch.equal(fg, torch.nonzero(fg_mask & in_image).flatten())
        assert torch.equal(bg, torch.nonzero(bg_mask & in_image).flatten())


@pytest.mark.parametrize("k", [0, 1, 3, 50])
def test_top_per_image_equals_the_per_image_mask_loop(k: int):
    gen = torch.Generator().manual_seed(k)
    keep = torch.randperm(60, generator=gen)[:45]  # ranked survivors
    image = torch.randint(0, 3, (45,), generator=gen)
    loop = torch.cat([keep[image == i][:k] for i in range(3)])
    assert torch.equal(top_per_image(keep, image, 3, k), loop)
    empty = keep[:0]
    assert top_per_image(empty, image[:0], 3, k).numel() == 0


def test_stats_stay_tensors_and_read_as_the_host_ratio():
    targets = _random_targets(3, [40, 30])
    sampler = build_sampler(SamplerConfig(name="heuristic", rois_per_batch=16, bg_lo=0.0), 2)
    torch.manual_seed(0)
    out = sampler.select(targets, GivenLosses([0.0] * len(targets)))
    fg = out.stats[FG_FRACTION]
    assert isinstance(fg, torch.Tensor) and fg.dim() == 0  # not read: no host sync
    n = out.indices.numel()
    assert out.stats[NUM_SELECTED] == float(n)
    assert fg.item() == int((targets.labels[out.indices] > 0).sum()) / n  # bit-exact
