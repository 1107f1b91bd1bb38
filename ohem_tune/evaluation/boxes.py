"""Box ops on inclusive pixel coordinates (Fast R-CNN's +1 convention): IoU, NMS, voting, clip.

torchvision's ops treat (x2, y2) as exclusive; shifting the far corner by one pixel turns them into
the inclusive convention exactly (a box's width is x2 - x1 + 1), so we keep their C++ speed.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms as _tv_batched_nms
from torchvision.ops import box_iou as _tv_box_iou
from torchvision.ops import nms as _tv_nms


def _exclusive(boxes: torch.Tensor) -> torch.Tensor:
    """Inclusive (x1, y1, x2, y2) -> exclusive corners, for torchvision's ops."""
    return torch.cat([boxes[:, :2], boxes[:, 2:4] + 1.0], dim=1)


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """(A, B) IoU of inclusive boxes (A, 4) and (B, 4)."""
    return _tv_box_iou(_exclusive(boxes_a), _exclusive(boxes_b))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """Indices kept by greedy NMS (suppress IoU > iou_thresh), by decreasing score."""
    return _tv_nms(_exclusive(boxes).float(), scores.float(), iou_thresh)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_thresh: float
) -> torch.Tensor:
    """NMS run independently within each group (e.g. class), indices by decreasing score."""
    return _tv_batched_nms(_exclusive(boxes).float(), scores.float(), groups, iou_thresh)


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Clip boxes (..., 4) to an image (x in [0, width - 1], y in [0, height - 1]), x2 >= x1.

    A regressed box narrower than one pixel decodes with x2 < x1 (x2 = x1 + w - 1); it becomes a
    one-pixel box instead of an inverted one, so every detection is a valid inclusive box.
    """
    out = boxes.clone()
    out[..., 0::2] = out[..., 0::2].clamp(0, width - 1)
    out[..., 1::2] = out[..., 1::2].clamp(0, height - 1)
    out[..., 2:4] = torch.maximum(out[..., 2:4], out[..., 0:2])
    return out


def box_voting(
    kept_boxes: torch.Tensor,
    candidate_boxes: torch.Tensor,
    candidate_scores: torch.Tensor,
    vote_iou: float,
    kept_groups: torch.Tensor | None = None,
    candidate_groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each kept box -> the score-weighted mean of the candidates with IoU >= vote_iou to it.

    MR-CNN's box voting; scores are left to the caller (unchanged). With groups (class labels),
    only candidates of the kept box's group vote. A kept box without voters stays as it was.
    """
    if kept_boxes.numel() == 0 or candidate_boxes.numel() == 0:
        return kept_boxes.clone()
    voters = box_iou(kept_boxes, candidate_boxes) >= vote_iou  # (M, C)
    if kept_groups is not None and candidate_groups is not None:
        voters &= kept_groups[:, None] == candidate_groups[None, :]
    weights = voters.to(candidate_scores.dtype) * candidate_scores.clamp_min(0)[None, :]
    total = weights.sum(dim=1, keepdim=True)
    voted = weights @ candidate_boxes.to(weights.dtype) / total.clamp_min(1e-12)
    return torch.where(total > 0, voted.to(kept_boxes.dtype), kept_boxes)
