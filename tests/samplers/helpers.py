"""Hand-built RoITargets for sampler tests (no model, no data loading)."""

from __future__ import annotations

import torch

from ohem_tune.modeling.matching import RoITargets


def targets_from(
    ious: list[list[float]], boxes: list[list[list[float]]] | None = None, fg_thresh: float = 0.5
) -> RoITargets:
    """RoITargets of images whose RoIs have the given max IoUs (label 1 when IoU >= fg_thresh)."""
    max_iou = torch.tensor([v for image in ious for v in image])
    image_index = torch.tensor([i for i, image in enumerate(ious) for _ in image])
    if boxes is None:
        coords = torch.arange(len(max_iou), dtype=torch.float32)[:, None].repeat(1, 4)
        coords[:, 2:] += 10.0
    else:
        coords = torch.tensor([b for image in boxes for b in image], dtype=torch.float32)
    labels = (max_iou >= fg_thresh).long()
    rois = torch.cat([image_index[:, None].float(), coords], dim=1)
    return RoITargets(
        rois, image_index, max_iou, labels.clone(), labels, torch.zeros(len(max_iou), 4), len(ious)
    )


class GivenLosses:
    """A ranking source with fixed per-RoI losses (cls, bbox)."""

    def __init__(self, loss_cls: list[float], loss_bbox: list[float] | None = None):
        self.cls = torch.tensor(loss_cls)
        self.bbox = torch.zeros_like(self.cls) if loss_bbox is None else torch.tensor(loss_bbox)
        self.calls = 0

    def losses(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        return self.cls, self.bbox
