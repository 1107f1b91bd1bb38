"""Box ops on inclusive pixel coordinates (Fast R-CNN's +1 convention): IoU, NMS, voting, clip.

torchvision's ops treat (x2, y2) as exclusive; shifting the far corner by one pixel turns them into
the inclusive convention exactly (a box's width is x2 - x1 + 1), so we keep their C++ speed.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchvision.ops import batched_nms as _tv_batched_nms
from torchvision.ops import box_iou as _tv_box_iou
from torchvision.ops import nms as _tv_nms

MATLAB_EPS = 2.220446049250313e-16  # MATLAB's eps (double), in MR-CNN's vote weight


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


def vote_weights(
    scores: torch.Tensor, weight: Literal["score", "mrcnn"] = "score", add_val: float = 1.5
) -> torch.Tensor:
    """Each voter's weight: max(0, score) ('score'), or MR-CNN's released
    `eps + max(0, score + add_val)` ('mrcnn', post_process_candidate_detections.m)."""
    if weight == "score":
        return scores.clamp_min(0)
    if weight == "mrcnn":
        return MATLAB_EPS + (scores + add_val).clamp_min(0)
    raise ValueError(f"vote weight must be 'score' or 'mrcnn', got {weight!r}")


def box_voting(
    kept_boxes: torch.Tensor,
    candidate_boxes: torch.Tensor,
    candidate_scores: torch.Tensor,
    vote_iou: float,
    kept_groups: torch.Tensor | None = None,
    candidate_groups: torch.Tensor | None = None,
    weight: Literal["score", "mrcnn"] = "score",
    add_val: float = 1.5,
) -> torch.Tensor:
    """Each kept box -> the weighted mean of the candidates with IoU >= vote_iou to it.

    MR-CNN's box voting; weights by `vote_weights`; scores are left to the caller (unchanged).
    With groups (class labels), only candidates of the kept box's group vote. A kept box without
    voters (or whose voters all weigh 0) stays as it was.
    """
    if kept_boxes.numel() == 0 or candidate_boxes.numel() == 0:
        return kept_boxes.clone()
    if kept_groups is None or candidate_groups is None:
        return _vote(kept_boxes, candidate_boxes, candidate_scores, vote_iou, weight, add_val)
    out = kept_boxes.clone()
    for group in torch.unique(kept_groups).tolist():  # per class: (M_k, C_k), not (M, C)
        rows = torch.nonzero(kept_groups == group).flatten()
        cols = torch.nonzero(candidate_groups == group).flatten()
        if cols.numel():
            out[rows] = _vote(
                kept_boxes[rows],
                candidate_boxes[cols],
                candidate_scores[cols],
                vote_iou,
                weight,
                add_val,
            )
    return out


def _vote(
    kept: torch.Tensor,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    vote_iou: float,
    weight: Literal["score", "mrcnn"],
    add_val: float,
) -> torch.Tensor:
    # fp32 at least, autocast off: fp16 would flush eps to 0, and autocast would run the
    # weighted sum (coordinates x hundreds of voters) as an fp16 matmul that overflows
    with torch.autocast(kept.device.type, enabled=False):
        dtype = torch.promote_types(scores.dtype, torch.float32)
        weights = (box_iou(kept, boxes) >= vote_iou).to(dtype)  # (M, C)
        weights *= vote_weights(scores.to(dtype), weight, add_val)[None, :]
        total = weights.sum(dim=1, keepdim=True)
        tiny = torch.finfo(weights.dtype).tiny  # eps-only weights sum to ~1e-16: keep them
        voted = weights @ boxes.to(weights.dtype) / total.clamp_min(tiny)
        return torch.where(total > 0, voted.to(kept.dtype), kept)
