"""All-RoIs sampler: every admitted RoI of every image (the authors' `_all_rois`), optional cap."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.config import SamplerConfig, build_config
from ohem_tune.errors import ConfigError
from ohem_tune.samplers import build_sampler
from tests.samplers.helpers import GivenLosses, targets_from

ROIS_PER_IMAGE = 2000


def _ious(seed: int, n: int = ROIS_PER_IMAGE) -> list[float]:
    """n max-IoUs of one image, ~15% fg, the rest spread over [0, 0.5), some exactly 0."""
    g = torch.Generator().manual_seed(seed)
    iou = torch.rand(n, generator=g) * 0.5
    fg = torch.rand(n, generator=g) < 0.15
    iou[fg] = 0.5 + 0.5 * torch.rand(int(fg.sum()), generator=g)
    iou[torch.rand(n, generator=g) < 0.1] = 0.0
    return iou.tolist()


def _minibatch():
    return targets_from([_ious(0), _ious(1)])


def _select(targets, **cfg):
    sampler_cfg = SamplerConfig(name="all_rois", bg_lo=cfg.pop("bg_lo", 0.0), **cfg)
    ranking = GivenLosses([0.0] * len(targets))
    out = build_sampler(sampler_cfg, ims_per_batch=2).select(targets, ranking)
    assert ranking.calls == 0  # no read-only pass: every RoI gets the trainable one
    return out


@pytest.mark.parametrize("b", [2048, 128])
def test_every_roi_of_a_two_image_minibatch_is_selected(b: int):
    targets = _minibatch()
    assert len(targets) == 2 * ROIS_PER_IMAGE
    out = _select(targets, rois_per_batch=b)  # B is the paper's row label, not a cap
    idx = out.indices.tolist()
    assert len(idx) == len(set(idx)) == 2 * ROIS_PER_IMAGE
    assert sorted(idx) == list(range(2 * ROIS_PER_IMAGE))
    assert out.stats["train/num_selected"] == 2 * ROIS_PER_IMAGE
    fg = float((targets.max_iou >= 0.5).float().mean())
    assert out.stats["train/fg_fraction"] == pytest.approx(fg)


def test_only_rois_the_fg_bg_masks_admit():
    targets = _minibatch()
    out = _select(targets, rois_per_batch=2048, bg_lo=0.1)
    iou = targets.max_iou
    admitted = torch.nonzero((iou >= 0.5) | (iou >= 0.1)).flatten()
    assert sorted(out.indices.tolist()) == admitted.tolist()
    assert len(admitted) < len(targets)  # IoU < 0.1 exists and is left out


def test_cap_keeps_fg_first_then_random_bg_per_image():
    targets = _minibatch()
    iou, image = targets.max_iou, targets.image_index
    cap = 500
    assert all(int(((iou >= 0.5) & (image == i)).sum()) < cap for i in (0, 1))
    draws = []
    for seed in range(2):
        torch.manual_seed(seed)
        out = _select(targets, max_rois_per_image=cap)
        idx = out.indices
        assert len(set(idx.tolist())) == len(idx) == 2 * cap
        for i in (0, 1):
            mine = idx[image[idx] == i]
            assert len(mine) == cap
            all_fg = torch.nonzero((iou >= 0.5) & (image == i)).flatten()
            assert set(all_fg.tolist()) <= set(mine.tolist())  # every fg kept
        draws.append(sorted(idx.tolist()))
    assert draws[0] != draws[1]  # the background fill is random


def test_cap_below_the_foreground_count_samples_foreground_only():
    targets = _minibatch()
    torch.manual_seed(0)
    out = _select(targets, max_rois_per_image=50)
    iou, image = targets.max_iou, targets.image_index
    for i in (0, 1):
        mine = out.indices[image[out.indices] == i]
        assert len(mine) == 50 and bool((iou[mine] >= 0.5).all())


def test_cap_on_another_sampler_is_a_config_error():
    tree = {"sampler": {"name": "heuristic", "max_rois_per_image": 100}}
    with pytest.raises(ConfigError, match=r"cfg\.yaml: sampler\.max_rois_per_image: .*all_rois"):
        build_config(tree, "cfg.yaml")
