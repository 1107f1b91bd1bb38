"""Test section: scales, NMS, thresholds, iterative bbox regression, metric."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ohem_tune.config.base import Section


class TestConfig(Section):
    """Inference and evaluation settings (Fast R-CNN defaults: 600px, NMS 0.3, 100 dets)."""

    __test__ = False  # not a pytest class

    scales: list[int] = Field(default_factory=lambda: [600], min_length=1)
    max_size: int = Field(1000, ge=32)
    nms_thresh: float = Field(0.3, gt=0.0, le=1.0)
    score_thresh: float = Field(0.05, ge=0.0, lt=1.0)
    max_per_image: int = Field(100, ge=1)
    iterative_bbox: bool = False
    bbox_iters: int = Field(2, ge=1, le=10)
    vote_iou: float = Field(0.5, gt=0.0, le=1.0)
    canonical_roi_size: int = Field(
        224, ge=8, description="multi-scale test: pool each RoI where its scaled side is ~this"
    )
    metric: Literal["voc07", "voc10", "coco"] = "voc07"
    max_images: int | None = Field(None, ge=1, description="evaluate on the first K test images")
    batch_images: int = Field(4, ge=1)
