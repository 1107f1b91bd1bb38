"""Ground-truth matching: each RoI's best GT, max IoU, label and box-regression target."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ohem_tune.modeling.boxes import box_iou, encode


@dataclass
class RoITargets:
    """Per-RoI matching results for all RoIs of a minibatch (concatenated over images)."""

    rois: torch.Tensor  # (R, 5) [batch_idx, x1, y1, x2, y2]
    image_index: torch.Tensor  # (R,) int64
    max_iou: torch.Tensor  # (R,) IoU with the best GT (0 when the image has no GT)
    gt_labels: torch.Tensor  # (R,) label of the best GT (0 when none)
    labels: torch.Tensor  # (R,) gt_labels where max_iou >= fg_thresh, else 0 (background)
    targets: torch.Tensor  # (R, 4) raw (un-normalised) deltas to the best GT; 0 for background
    num_images: int

    def __len__(self) -> int:
        return self.rois.shape[0]

    def subset(self, idx: torch.Tensor) -> RoITargets:
        """The selected RoIs only (same image count)."""
        return RoITargets(
            self.rois[idx],
            self.image_index[idx],
            self.max_iou[idx],
            self.gt_labels[idx],
            self.labels[idx],
            self.targets[idx],
            self.num_images,
        )


def match_image(
    rois: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(max_iou, best-GT label, raw targets to the best GT) for (R, 4) inclusive rois."""
    r = rois.shape[0]
    if gt_boxes.numel() == 0:
        zeros = rois.new_zeros(r)
        return zeros, torch.zeros(r, dtype=torch.long, device=rois.device), rois.new_zeros(r, 4)
    iou = box_iou(rois, gt_boxes)
    max_iou, best = iou.max(dim=1)
    return max_iou, gt_labels[best], encode(rois, gt_boxes[best])


def match_minibatch(
    rois: list[torch.Tensor],
    gt_boxes: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    fg_thresh: float,
    scales: list[float] | None = None,
) -> RoITargets:
    """Match every image's RoIs (GT first, then proposals) to its GT and concatenate.

    RoIs and GT are in the image's original pixels, where the authors compute overlaps and
    targets (fast-rcnn's roidb): with +1 widths an IoU changes with the resize. `scales` maps
    the returned `rois` onto each resized image, for pooling (their `_project_im_rois`)."""
    parts = [match_image(r, b, lab) for r, b, lab in zip(rois, gt_boxes, gt_labels, strict=True)]
    max_iou = torch.cat([p[0] for p in parts])
    gt_lab = torch.cat([p[1] for p in parts])
    targets = torch.cat([p[2] for p in parts])
    image_index = torch.cat(
        [r.new_full((r.shape[0],), i, dtype=torch.long) for i, r in enumerate(rois)]
    )
    labels = torch.where(max_iou >= fg_thresh, gt_lab, torch.zeros_like(gt_lab))
    targets = torch.where((labels > 0)[:, None], targets, torch.zeros_like(targets))
    pooled = rois if scales is None else [r * s for r, s in zip(rois, scales, strict=True)]
    batch_rois = torch.cat([image_index[:, None].to(targets.dtype), torch.cat(pooled)], dim=1)
    return RoITargets(batch_rois, image_index, max_iou, gt_lab, labels, targets, len(rois))
