"""Fast R-CNN losses: softmax cross-entropy + class-specific smooth-L1 (fg only), in fp32.

Under autocast the logits and deltas arrive in fp16/bf16; the losses cast them to fp32 and run
with autocast off, so no loss (or per-RoI ranking loss) is computed in reduced precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def select_class_deltas(bbox_deltas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(R, 4*(K+1)) -> the (R, 4) deltas of each RoI's own label."""
    deltas = bbox_deltas.reshape(bbox_deltas.shape[0], bbox_deltas.shape[1] // 4, 4)
    return deltas[torch.arange(deltas.shape[0], device=deltas.device), labels]


def per_roi_losses(
    cls_logits: torch.Tensor,
    bbox_deltas: torch.Tensor,
    labels: torch.Tensor,
    norm_targets: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-RoI (R,) classification loss -log p_label and smooth-L1 box loss (0 for background)."""
    with torch.autocast(cls_logits.device.type, enabled=False):
        loss_cls = F.cross_entropy(cls_logits.float(), labels, reduction="none")
        pred = select_class_deltas(bbox_deltas.float(), labels)
        box = F.smooth_l1_loss(pred, norm_targets.float(), beta=1.0, reduction="none").sum(dim=1)
        loss_bbox = torch.where(labels > 0, box, torch.zeros_like(box))
    return loss_cls, loss_bbox


def fast_rcnn_loss(
    cls_logits: torch.Tensor,
    bbox_deltas: torch.Tensor,
    labels: torch.Tensor,
    norm_targets: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minibatch losses as py-faster-rcnn: CE mean and smooth-L1 sum, both over the R RoIs.

    Returns (loss_cls, loss_bbox, per-RoI total loss detached) .
    """
    loss_cls, loss_bbox = per_roi_losses(cls_logits, bbox_deltas, labels, norm_targets)
    n = max(labels.shape[0], 1)
    return loss_cls.sum() / n, loss_bbox.sum() / n, (loss_cls + loss_bbox).detach()
