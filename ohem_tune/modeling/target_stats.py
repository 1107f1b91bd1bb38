"""Per-class means/stds of the box-regression targets over a training set (py-faster-rcnn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ohem_tune.data.records import ImageRecord
from ohem_tune.modeling.matching import match_image


def compute_target_stats(
    records: Sequence[ImageRecord],
    num_classes: int,
    fg_thresh: float,
    fallback_stds: Sequence[float],
    use_difficult: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K+1, 4) means and stds of the raw targets of every fg RoI (GT + proposals) per class.

    The targets are scale-invariant, so original-image coordinates give the training statistics.
    Background (row 0) and classes without foreground keep mean 0 and the fallback stds.
    """
    sums = torch.zeros(num_classes + 1, 4, dtype=torch.float64)
    squares = torch.zeros_like(sums)
    counts = torch.zeros(num_classes + 1, dtype=torch.float64)
    for rec in records:
        keep = np.ones(len(rec.boxes), bool) if use_difficult else ~rec.difficult.astype(bool)
        gt = torch.as_tensor(rec.boxes[keep], dtype=torch.float32).reshape(-1, 4)
        if gt.shape[0] == 0:
            continue
        gt_labels = torch.as_tensor(rec.labels[keep], dtype=torch.long)
        props = torch.as_tensor(rec.proposals, dtype=torch.float32).reshape(-1, 4)
        max_iou, labels, targets = match_image(torch.cat([gt, props]), gt, gt_labels)
        fg = max_iou >= fg_thresh
        t, lab = targets[fg].double(), labels[fg]
        sums.index_add_(0, lab, t)
        squares.index_add_(0, lab, t * t)
        counts.index_add_(0, lab, torch.ones_like(lab, dtype=torch.float64))
    fallback = torch.tensor(fallback_stds, dtype=torch.float64).expand(num_classes + 1, 4)
    have = counts[:, None] >= 2
    have[0] = False
    denom = counts.clamp(min=1)[:, None]
    means = torch.where(have, sums / denom, torch.zeros_like(sums))
    var = (squares / denom - means**2).clamp(min=0)
    stds = torch.where(have & (var > 1e-12), var.sqrt(), fallback)
    return means.float(), stds.float()
