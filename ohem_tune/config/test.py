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
    score_thresh: float = Field(
        0.05, ge=0.0, lt=1.0, description="keep (RoI, class) pairs with score strictly above it"
    )
    max_per_image: int = Field(
        100, ge=1, description="detections kept after NMS, counted as `detections_per` says"
    )
    detections_per: Literal["image", "class"] = Field(
        "image",
        description="what max_per_image counts: 'image' = per image over all classes "
        "(py-faster-rcnn, the OHEM script), 'class' = per class per image (MR-CNN; "
        "see docs/evaluation.md)",
    )
    iterative_bbox: bool = False
    bbox_iters: int = Field(2, ge=1, le=10)
    vote_iou: float = Field(0.5, gt=0.0, le=1.0)
    vote_weight: Literal["score", "mrcnn"] = Field(
        "score",
        description="+B voter weight: 'score' = max(0, score); 'mrcnn' = eps + max(0, score + "
        "vote_add_val) (MR-CNN's released code, written for SVM scores)",
    )
    vote_add_val: float = Field(1.5, description="add_val of vote_weight 'mrcnn' (MR-CNN: 1.5)")
    vote_voters: Literal["thresholded", "all"] = Field(
        "thresholded",
        description="+B voters: the class's candidates over score_thresh, or every candidate "
        "of the class from every iteration (MR-CNN's code)",
    )
    canonical_roi_size: int = Field(
        224, ge=8, description="multi-scale test: pool each RoI where its scaled side is ~this"
    )
    metric: Literal["voc07", "voc10", "coco"] = "voc07"
    max_images: int | None = Field(None, ge=1, description="evaluate on the first K test images")
    batch_images: int = Field(4, ge=1)
