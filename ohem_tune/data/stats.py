"""Dataset statistics for `ohem-tune data inspect`: objects per class, proposals, RoI IoU bands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ohem_tune.data.boxes import box_iou, flip_boxes
from ohem_tune.data.proposals import by_image_key
from ohem_tune.data.records import DetectionDataset


@dataclass
class DatasetStats:
    """Counts over a split; RoI bands are the samplers' view of the proposals (GT excluded)."""

    images: int
    objects_per_class: dict[str, int]
    difficult_per_class: dict[str, int]
    proposals_mean: float
    proposals_min: int
    proposals_max: int
    bg_lo: float
    fg: int  # max IoU with a training GT box >= 0.5
    bg_band: int  # [bg_lo, 0.5): what the heuristic samples as background
    below_bg_lo: int  # [0, bg_lo): never sampled by the heuristic unless bg_lo = 0
    iou_zero: int  # exactly 0 overlap with every object (a subset of below_bg_lo)
    on_paintings: int | None = None  # IoU >= 0.5 with a distractor (synthetic set only)
    empty_images: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def rois(self) -> int:
        """All proposals counted."""
        return self.fg + self.bg_band + self.below_bg_lo


def dataset_stats(
    dataset: DetectionDataset,
    bg_lo: float = 0.1,
    paintings: Mapping[str, np.ndarray] | None = None,
    use_difficult: bool = False,
) -> DatasetStats:
    """Per-class object counts and the IoU bands of every proposal against training GT."""
    objects = np.zeros(dataset.num_classes, dtype=np.int64)
    difficult = np.zeros(dataset.num_classes, dtype=np.int64)
    counts = np.array([len(r.proposals) for r in dataset.records])
    paintings = by_image_key(paintings) if paintings is not None else None
    fg = band = below = zero = on_paint = empty = 0
    for record in dataset.records:
        np.add.at(objects, record.labels - 1, 1)
        np.add.at(difficult, record.labels[record.difficult] - 1, 1)
        empty += int(len(record.boxes) == 0)
        gt = record.boxes[record.training_gt_mask(use_difficult)]
        best = (
            box_iou(record.proposals, gt).max(axis=1)
            if len(gt)
            else np.zeros(len(record.proposals))
        )
        fg += int((best >= 0.5).sum())
        band += int(((best >= bg_lo) & (best < 0.5)).sum())
        below += int((best < bg_lo).sum())
        zero += int((best == 0).sum())
        if paintings is not None and len(paintings.get(str(record.image_id), ())):
            boxes = paintings[str(record.image_id)]
            if record.flipped:
                boxes = flip_boxes(boxes, record.width)
            hit = box_iou(record.proposals, boxes).max(axis=1) >= 0.5
            on_paint += int((hit & (best == 0)).sum())
    return DatasetStats(
        images=len(dataset),
        objects_per_class=dict(zip(dataset.class_names, objects.tolist(), strict=True)),
        difficult_per_class=dict(zip(dataset.class_names, difficult.tolist(), strict=True)),
        proposals_mean=float(counts.mean()) if len(counts) else 0.0,
        proposals_min=int(counts.min()) if len(counts) else 0,
        proposals_max=int(counts.max()) if len(counts) else 0,
        bg_lo=bg_lo,
        fg=fg,
        bg_band=band,
        below_bg_lo=below,
        iou_zero=zero,
        on_paintings=on_paint if paintings is not None else None,
        empty_images=empty,
    )
