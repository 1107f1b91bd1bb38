"""The one-line test protocol written on every run (and printed under the report's tables)."""

from __future__ import annotations

from ohem_tune.config import Config
from ohem_tune.evaluation.protocol import test_protocol


def test_default_and_authors_protocols():
    cfg = Config()
    assert test_protocol(cfg) == "voc07 · NMS 0.3 · ≤100 dets/image · score > 0.05 · test split"
    cfg.test.max_per_image, cfg.test.score_thresh = 2000, 0.00001  # --num_dets / --det_thresh
    assert test_protocol(cfg) == "voc07 · NMS 0.3 · ≤2000 dets/image · score > 1e-05 · test split"


def test_per_class_cap_subset_and_split_are_stated():
    cfg = Config()
    cfg.test.detections_per = "class"
    cfg.test.max_images = 50
    cfg.test.metric = "voc10"
    cfg.dataset.test_split = "val"
    assert test_protocol(cfg) == (
        "voc10 · NMS 0.3 · ≤100 dets/class/image · score > 0.05 · val split · first 50 images"
    )
