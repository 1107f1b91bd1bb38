"""Online hard example mining (Shrivastava et al., CVPR 2016), as in the authors' Caffe code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

from ohem_tune.modeling.boxes import to_exclusive
from ohem_tune.modeling.matching import RoITargets
from ohem_tune.samplers.base import RoILosses, RoISampler, SampleResult, register


@register("ohem")
class OHEMSampler(RoISampler):
    """Rank candidate RoIs by the read-only pass's loss, de-duplicate, keep the top B.

    Loss = cls (+ smooth-L1 for fg unless `ranking_loss: cls`). NMS at `nms_thresh` with the
    loss as score, per (image, label). Then the top B/N per image (`mining: per_image`) or top B
    over the minibatch (`per_batch`), with no fg:bg ratio; all survivors when fewer remain.
    Candidates are fg plus bg in [bg_lo, bg_hi): the paper's OHEM uses bg_lo = 0 (every RoI).
    """

    ranks_by_loss = True

    def select(self, targets: RoITargets, ranking: RoILosses) -> SampleResult:
        loss_cls, loss_bbox = ranking.losses()
        loss = loss_cls if self.cfg.ranking_loss == "cls" else loss_cls + loss_bbox
        fg_mask, bg_mask = self.fg_bg_masks(targets)
        cand = torch.nonzero(fg_mask | bg_mask).flatten()
        num_labels = targets.labels.max() + 1 if len(targets) else 1  # on the device: no sync
        groups = targets.image_index[cand] * num_labels + targets.labels[cand]
        boxes = to_exclusive(targets.rois[cand, 1:]).float()
        # batched_nms returns survivors sorted by decreasing loss
        keep = cand[batched_nms(boxes, loss[cand].float(), groups, self.cfg.nms_thresh)]
        if self.cfg.mining == "per_batch":
            chosen = keep[: self.rois_per_batch]
        else:
            img = targets.image_index[keep]
            chosen = top_per_image(keep, img, targets.num_images, self.rois_per_image)
        return self.result(targets, chosen)


def top_per_image(keep: torch.Tensor, image: torch.Tensor, num_images: int, k: int) -> torch.Tensor:
    """The first k of `keep` (ranked) of each image, image 0's first: one host sync in all."""
    seen = F.one_hot(image, num_images).cumsum(dim=0)  # (S, N) survivors so far per image
    rank = seen.gather(1, image[:, None]).squeeze(1) - 1  # position within its image
    taken = torch.nonzero(rank < k).flatten()
    return keep[taken][torch.argsort(image[taken], stable=True)]
