"""The paper's "all RoIs" baseline: every fg and bg RoI of every image gets gradient.

As the authors' `_all_rois` (abhi2610/ohem `lib/roi_data_layer/minibatch.py`): foreground
IoU >= fg_thresh plus background IoU in [bg_lo, bg_hi) (the authors assert bg_lo = 0), with no
per-image or per-batch cap; `sampler.rois_per_batch` (the paper's "B = 2048" row label) is not
read. `sampler.max_rois_per_image` is an optional cap of ours (see docs/training.md).
"""

from __future__ import annotations

import torch

from ohem_tune.modeling.matching import RoITargets
from ohem_tune.samplers.base import RoILosses, RoISampler, SampleResult, random_subset, register


@register("all_rois")
class AllRoIsSampler(RoISampler):
    """Per image: all fg and all bg (IoU in [bg_lo, bg_hi)) RoIs; optionally capped per image.

    With `sampler.max_rois_per_image` set, fg are kept first (at random if they alone exceed the
    cap) and the remaining slots are filled with bg at random (our choice; documented).
    """

    def select(self, targets: RoITargets, ranking: RoILosses) -> SampleResult:
        fg_mask, bg_mask = self.fg_bg_masks(targets)
        cap = self.cfg.max_rois_per_image
        picked = []
        for fg, bg in self.per_image_candidates(targets, fg_mask, bg_mask):
            if cap is not None:
                fg = random_subset(fg, cap)
                bg = random_subset(bg, cap - fg.numel())
            picked += [fg, bg]
        return self.result(targets, torch.cat(picked))
