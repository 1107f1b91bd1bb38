"""Small hand-built datasets and detection tables for the evaluator tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ohem_tune.data.records import DetectionDataset, ImageRecord
from ohem_tune.evaluation.detections import Detections

Box = Sequence[float]


def record(
    image_id: str | int,
    boxes: Sequence[Box] = (),
    labels: Sequence[int] = (),
    difficult: Sequence[bool] | None = None,
    size: tuple[int, int] = (100, 100),
) -> ImageRecord:
    """An ImageRecord with GT only (height, width = size)."""
    n = len(boxes)
    return ImageRecord(
        image_id=image_id,
        path=Path(f"{image_id}.jpg"),
        width=size[1],
        height=size[0],
        boxes=np.asarray(boxes, np.float32).reshape(n, 4),
        labels=np.asarray(labels, np.int64).reshape(n),
        difficult=np.asarray(difficult if difficult is not None else [False] * n, bool),
        proposals=np.zeros((0, 4), np.float32),
    )


def dataset(
    records: Sequence[ImageRecord], class_names: Sequence[str] = ("a",)
) -> DetectionDataset:
    """A DetectionDataset over hand-made records."""
    return DetectionDataset("hand", list(class_names), list(records))


def dets(rows: Sequence[tuple]) -> Detections:
    """Detections from (image_id, label, x1, y1, x2, y2, score) rows."""
    if not rows:
        return Detections.empty()
    return Detections(
        image_ids=np.array([r[0] for r in rows], dtype=object),
        labels=np.array([r[1] for r in rows], np.int64),
        boxes=np.array([r[2:6] for r in rows], np.float64),
        scores=np.array([r[6] for r in rows], np.float64),
    )
