"""Numpy box helpers in Fast R-CNN's inclusive pixel convention (width = x2 - x1 + 1)."""

from __future__ import annotations

import numpy as np


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """(B,) areas of (B, 4) inclusive boxes."""
    return (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of inclusive boxes, as Fast R-CNN's bbox_overlaps computes it."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    return inter / union


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped into [0, width - 1] x [0, height - 1] (a copy)."""
    out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    out[:, 0::2] = np.clip(out[:, 0::2], 0, width - 1)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, height - 1)
    return out


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Horizontally mirrored boxes: x' = W - 1 - x, so x1' = W - 1 - x2 and x2' = W - 1 - x1."""
    out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    out[:, 0] = width - 1 - boxes[:, 2]
    out[:, 2] = width - 1 - boxes[:, 0]
    return out
