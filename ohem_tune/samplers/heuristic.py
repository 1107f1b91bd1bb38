"""Fast R-CNN's heuristic sampler: fg fraction at IoU >= fg_thresh, bg in [bg_lo, bg_hi)."""

from __future__ import annotations

import torch

from ohem_tune.modeling.matching import RoITargets
from ohem_tune.samplers.base import RoILosses, RoISampler, SampleResult, random_subset, register


@register("heuristic")
class HeuristicSampler(RoISampler):
    """Per image: round(fg_fraction * B/N) fg at random, then bg at random up to B/N.

    Both without replacement and capped at what exists, so a minibatch can hold fewer than B
    RoIs (py-faster-rcnn's `_sample_rois`).
    """

    def select(self, targets: RoITargets, ranking: RoILosses) -> SampleResult:
        fg_mask, bg_mask = self.fg_bg_masks(targets)
        fg_quota = int(round(self.cfg.fg_fraction * self.rois_per_image))
        picked = []
        for fg_all, bg_all in self.per_image_candidates(targets, fg_mask, bg_mask):
            fg = random_subset(fg_all, fg_quota)
            bg = random_subset(bg_all, self.rois_per_image - fg.numel())
            picked += [fg, bg]
        return self.result(targets, torch.cat(picked))
