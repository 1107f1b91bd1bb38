"""Class-specific candidate detections of one image, and the standard per-class NMS + cap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ohem_tune.evaluation.boxes import batched_nms


@dataclass
class Candidates:
    """Class-specific candidate detections of one image: boxes (M, 4), scores (M,), labels 1..K."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    @staticmethod
    def cat(parts: Sequence[Candidates]) -> Candidates:
        """All rows of parts, in order."""
        return Candidates(
            torch.cat([p.boxes for p in parts]),
            torch.cat([p.scores for p in parts]),
            torch.cat([p.labels for p in parts]),
        )

    def take(self, index: torch.Tensor) -> Candidates:
        """The rows at index (indices or a boolean mask)."""
        return Candidates(self.boxes[index], self.scores[index], self.labels[index])


def class_candidates(
    class_boxes: torch.Tensor, class_scores: torch.Tensor, score_thresh: float
) -> Candidates:
    """Every (RoI, class) pair over the score threshold, from (R, K+1, 4) boxes, (R, K+1) scores."""
    above = class_scores[:, 1:] > score_thresh
    roi, k = torch.nonzero(above, as_tuple=True)
    return Candidates(class_boxes[roi, k + 1], class_scores[roi, k + 1], k + 1)


def keep_top(
    cands: Candidates,
    nms_thresh: float,
    max_per_image: int,
    per: Literal["image", "class"] = "image",
) -> Candidates:
    """Per-class NMS, then the max_per_image highest-scoring detections over all classes
    (per = "image", py-faster-rcnn) or of each class (per = "class", MR-CNN)."""
    if len(cands.scores) == 0:
        return cands
    keep = batched_nms(cands.boxes, cands.scores, cands.labels, nms_thresh)  # decreasing scores
    if per == "image":
        return cands.take(keep[:max_per_image])
    if per != "class":
        raise ValueError(f"keep_top: per must be 'image' or 'class', got {per!r}")
    return cands.take(keep[rank_within(cands.labels[keep]) < max_per_image])


def rank_within(groups: torch.Tensor) -> torch.Tensor:
    """Each row's 0-based position among the earlier rows of its group (rows in order)."""
    order = torch.argsort(groups, stable=True)
    sorted_groups = groups[order].contiguous()
    first = torch.searchsorted(sorted_groups, sorted_groups)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=groups.device) - first
    return rank


def to_per_class(cands: Candidates, num_classes: int) -> list[np.ndarray]:
    """Per class k (label k + 1): (D, 5) float32 rows x1, y1, x2, y2, score, best first."""
    table = torch.cat([cands.boxes, cands.scores[:, None]], dim=1).float().cpu().numpy()
    labels = cands.labels.cpu().numpy()
    out = []
    for label in range(1, num_classes + 1):
        rows = table[labels == label]
        out.append(rows[np.argsort(-rows[:, 4], kind="stable")])
    return out
