"""The test protocol of a run as one line: what every number of a table must share.

Written as the `ohem_tune.test_protocol` tag on every trial run and printed under the report's
tables, so a table never silently mixes, say, 100 detections per image at 0.05 with 2000 at 1e-5.
"""

from __future__ import annotations

from ohem_tune.config import Config


def test_protocol(cfg: Config) -> str:
    """E.g. 'voc07 · NMS 0.3 · ≤2000 dets/image · score > 1e-05 · test split'."""
    test = cfg.test
    per = "image" if test.detections_per == "image" else "class/image"
    parts = [
        test.metric,
        f"NMS {test.nms_thresh:g}",
        f"≤{test.max_per_image} dets/{per}",
        f"score > {test.score_thresh:g}",
        f"{cfg.dataset.test_split} split",
    ]
    if test.max_images is not None:
        parts.append(f"first {test.max_images} images")
    return " · ".join(parts)


test_protocol.__test__ = False  # not a pytest test
