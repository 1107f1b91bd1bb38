"""mmdetection's OHEMSampler: hardest fg and bg by classification loss, fixed fg fraction."""

from __future__ import annotations

import torch

from ohem_tune.modeling.matching import RoITargets
from ohem_tune.samplers.base import RoILosses, RoISampler, SampleResult, register, top_k


@register("ohem_balanced")
class BalancedOHEMSampler(RoISampler):
    """Per image: the round(fg_fraction * B/N) fg and B/N - (fg taken) bg of highest cls loss.

    No NMS, and the ranking loss is the classification loss only (mmdetection's choice).
    """

    ranks_by_loss = True

    def select(self, targets: RoITargets, ranking: RoILosses) -> SampleResult:
        loss_cls, _ = ranking.losses()
        fg_mask, bg_mask = self.fg_bg_masks(targets)
        fg_quota = int(round(self.cfg.fg_fraction * self.rois_per_image))
        picked = []
        for fg_all, bg_all in self.per_image_candidates(targets, fg_mask, bg_mask):
            fg = top_k(fg_all, loss_cls, fg_quota)
            bg = top_k(bg_all, loss_cls, self.rois_per_image - fg.numel())
            picked += [fg, bg]
        return self.result(targets, torch.cat(picked))
