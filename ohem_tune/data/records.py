"""The data contract: per-image records every loader returns, and the minibatch the trainer eats.

Coordinates are Fast R-CNN's: 0-based pixel indices, inclusive corners (x1, y1, x2, y2), so a box's
width is x2 - x1 + 1. VOC's 1-based XML coordinates are shifted by -1 on load; COCO's [x, y, w, h]
becomes (x, y, x + w - 1, y + h - 1). Labels are 1..K; 0 is background.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class ImageRecord:
    """One image with its ground truth and proposals (original image coordinates)."""

    image_id: str | int  # VOC: file stem; COCO: the original integer image id
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (G, 4) float32, inclusive pixel coords
    labels: np.ndarray  # (G,) int64 in 1..K
    difficult: np.ndarray  # (G,) bool
    proposals: np.ndarray  # (P, 4) float32, validated: finite, inside the image, non-degenerate
    flipped: bool = False
    iscrowd: np.ndarray | None = None  # (G,) bool, COCO crowd regions (never training GT)

    def training_gt_mask(self, use_difficult: bool = False) -> np.ndarray:
        """(G,) bool: objects used as training GT (never crowd; difficult only if asked)."""
        keep = np.ones(len(self.boxes), dtype=bool)
        if not use_difficult:
            keep &= ~self.difficult.astype(bool)
        if self.iscrowd is not None:
            keep &= ~self.iscrowd.astype(bool)
        return keep


@dataclass
class DetectionDataset:
    """A split: class names (index i -> label i + 1) and its records."""

    name: str
    class_names: list[str]
    records: list[ImageRecord]
    category_ids: list[int] | None = None  # COCO: label i + 1 -> original category id
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (background excluded)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class Minibatch:
    """N images resized, normalised and padded, with RoIs and GT in the original pixels (they
    are matched there, and pooled at `scales`)."""

    images: torch.Tensor  # (N, 3, H, W) float32, pixel mean subtracted, zero padded
    image_sizes: list[tuple[int, int]]  # (h, w) of each resized image before padding
    scales: list[float]  # resize factor of each image
    rois: list[torch.Tensor]  # per image (R_i, 4) float32: GT boxes first, then proposals
    gt_boxes: list[torch.Tensor]  # per image (G_i, 4) float32 (difficult excluded for training)
    gt_labels: list[torch.Tensor]  # per image (G_i,) int64 in 1..K
    record_indices: list[int]  # index into the dataset's records

    def pin_memory(self) -> Minibatch:
        """The same batch in pinned host memory (DataLoader calls this when pin_memory=True)."""
        return Minibatch(
            images=self.images.pin_memory(),
            image_sizes=self.image_sizes,
            scales=self.scales,
            rois=[r.pin_memory() for r in self.rois],
            gt_boxes=[b.pin_memory() for b in self.gt_boxes],
            gt_labels=[lab.pin_memory() for lab in self.gt_labels],
            record_indices=self.record_indices,
        )

    def to(self, device: torch.device | str) -> Minibatch:
        """The same batch on device (non_blocking where pinned)."""
        return Minibatch(
            images=self.images.to(device, non_blocking=True),
            image_sizes=self.image_sizes,
            scales=self.scales,
            rois=[r.to(device, non_blocking=True) for r in self.rois],
            gt_boxes=[b.to(device, non_blocking=True) for b in self.gt_boxes],
            gt_labels=[lab.to(device, non_blocking=True) for lab in self.gt_labels],
            record_indices=self.record_indices,
        )
