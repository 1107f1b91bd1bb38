"""The paper's "all RoIs" baseline: every RoI with IoU >= bg_lo gets gradient, capped at B."""

from __future__ import annotations

import torch

from ohem_tune.modeling.matching import RoITargets
from ohem_tune.samplers.base import RoILosses, RoISampler, SampleResult, random_subset, register


@register("all_rois")
class AllRoIsSampler(RoISampler):
    """Per image: all fg and all bg (IoU in [bg_lo, bg_hi)) RoIs, up to B/N.

    The paper uses B = 2048 with bg_lo = 0, where the cap rarely binds. When it does, fg are
    kept first and the remaining slots are filled with bg at random (our choice; documented).
    """

    def select(self, targets: RoITargets, ranking: RoILosses) -> SampleResult:
        fg_mask, bg_mask = self.fg_bg_masks(targets)
        picked = []
        for i in range(targets.num_images):
            in_image = targets.image_index == i
            fg = random_subset(torch.nonzero(fg_mask & in_image).flatten(), self.rois_per_image)
            bg_quota = self.rois_per_image - fg.numel()
            bg = random_subset(torch.nonzero(bg_mask & in_image).flatten(), bg_quota)
            picked += [fg, bg]
        return self.result(targets, torch.cat(picked))
