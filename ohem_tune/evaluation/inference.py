"""Fast R-CNN test-time detection: RoI scoring, class-specific boxes, NMS and the cap.

The image pyramid and its features live in `pyramid.py` (shared with `iterative.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ohem_tune.config.test import TestConfig
from ohem_tune.evaluation.boxes import clip_boxes
from ohem_tune.evaluation.candidates import class_candidates, keep_top, to_per_class
from ohem_tune.evaluation.iterative import iterative_detect
from ohem_tune.evaluation.pyramid import PyramidFeatures, PyramidImage


def detect_batch(
    model: torch.nn.Module, batch: Sequence[PyramidImage], test: TestConfig, device: torch.device
) -> list[list[np.ndarray]]:
    """Detections of each image in the batch: per class (D, 5) arrays in original pixels."""
    pyramid = PyramidFeatures(model, batch, device, test.canonical_roi_size)
    proposals = [img.proposals.to(device) for img in batch]
    counts = [len(p) for p in proposals]
    logits, deltas = pyramid.score(proposals)
    scores = torch.softmax(logits, dim=1).split(counts)
    decoded = model.decode_boxes(torch.cat(proposals), deltas).split(counts)
    class_boxes = [
        clip_boxes(b, img.height, img.width) for b, img in zip(decoded, batch, strict=True)
    ]
    if test.iterative_bbox:
        final = iterative_detect(model, pyramid, batch, class_boxes, scores, test)
    else:
        final = [
            keep_top(
                class_candidates(b, s, test.score_thresh),
                test.nms_thresh,
                test.max_per_image,
                test.detections_per,
            )
            for b, s in zip(class_boxes, scores, strict=True)
        ]
    return [to_per_class(c, model.num_classes) for c in final]
