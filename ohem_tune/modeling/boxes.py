"""Torch box helpers in Fast R-CNN's inclusive pixel convention (width = x2 - x1 + 1).

torchvision's box_iou / nms treat boxes as continuous [x1, x2) intervals (width = x2 - x1).
`to_exclusive` adds 1 to the far corner so that torchvision's ops give Fast R-CNN's
bbox_overlaps numbers exactly; every IoU and NMS in the trainer goes through it.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou as _tv_box_iou


def to_exclusive(boxes: torch.Tensor) -> torch.Tensor:
    """Inclusive (x1, y1, x2, y2) -> continuous [x1, x2 + 1) boxes for torchvision's ops."""
    out = boxes.clone()
    out[..., 2:4] += 1.0
    return out


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(A, B) IoU of inclusive boxes (Fast R-CNN's +1 convention)."""
    if a.numel() == 0 or b.numel() == 0:
        return a.new_zeros((a.shape[0], b.shape[0]))
    return _tv_box_iou(to_exclusive(a.float()), to_exclusive(b.float()))


def encode(rois: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Regression targets (dx, dy, dw, dh) from rois to gt, as Fast R-CNN's bbox_transform."""
    widths = rois[:, 2] - rois[:, 0] + 1.0
    heights = rois[:, 3] - rois[:, 1] + 1.0
    ctr_x = rois[:, 0] + 0.5 * widths
    ctr_y = rois[:, 1] + 0.5 * heights
    gt_w = gt[:, 2] - gt[:, 0] + 1.0
    gt_h = gt[:, 3] - gt[:, 1] + 1.0
    gt_x = gt[:, 0] + 0.5 * gt_w
    gt_y = gt[:, 1] + 0.5 * gt_h
    return torch.stack(
        (
            (gt_x - ctr_x) / widths,
            (gt_y - ctr_y) / heights,
            torch.log(gt_w / widths),
            torch.log(gt_h / heights),
        ),
        dim=1,
    )


_MAX_LOG_RATIO = 4.135  # log(1000 / 16): clamp exp() as detectron2 does


def decode(rois: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Boxes (R, C, 4) from rois (R, 4) and raw deltas (R, C, 4), as bbox_transform_inv."""
    widths = (rois[:, 2] - rois[:, 0] + 1.0)[:, None]
    heights = (rois[:, 3] - rois[:, 1] + 1.0)[:, None]
    ctr_x = rois[:, 0, None] + 0.5 * widths
    ctr_y = rois[:, 1, None] + 0.5 * heights
    dx, dy = deltas[..., 0], deltas[..., 1]
    dw = deltas[..., 2].clamp(max=_MAX_LOG_RATIO)
    dh = deltas[..., 3].clamp(max=_MAX_LOG_RATIO)
    pred_x = dx * widths + ctr_x
    pred_y = dy * heights + ctr_y
    pred_w = torch.exp(dw) * widths
    pred_h = torch.exp(dh) * heights
    return torch.stack(
        (
            pred_x - 0.5 * pred_w,
            pred_y - 0.5 * pred_h,
            pred_x + 0.5 * pred_w - 1.0,
            pred_y + 0.5 * pred_h - 1.0,
        ),
        dim=-1,
    )


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes (..., 4) clipped into [0, width - 1] x [0, height - 1]."""
    out = boxes.clone()
    out[..., 0::2] = out[..., 0::2].clamp(0, width - 1)
    out[..., 1::2] = out[..., 1::2].clamp(0, height - 1)
    return out
