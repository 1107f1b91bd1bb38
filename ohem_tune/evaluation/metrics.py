"""Detections + ground truth -> the eval/* metrics every run reports (keys in tracking_keys)."""

from __future__ import annotations

from typing import Literal

from ohem_tune import tracking_keys as keys
from ohem_tune.data.records import DetectionDataset
from ohem_tune.evaluation.coco import coco_eval
from ohem_tune.evaluation.detections import Detections
from ohem_tune.evaluation.voc import voc_eval

Metric = Literal["voc07", "voc10", "coco"]


def compute_metrics(
    dets: Detections, dataset: DetectionDataset, metric: Metric = "voc07"
) -> tuple[dict[str, float], dict[str, float]]:
    """(eval/* metrics, per-class AP of the headline metric).

    eval/mAP is the headline: VOC07 11-point AP (voc07), VOC2010+ all-points AP (voc10) or COCO
    AP@[.5:.95] (coco). eval/mAP_area is always the VOC all-points AP at IoU 0.5. eval/AP/<class>
    follows the headline; classes without GT have NaN AP and are left out of the means, and COCO
    stats of an area range without GT (COCOeval's -1) are NaN.
    """
    voc = voc_eval(dets, dataset)
    coco_stats: dict[str, float] = {}
    if metric == "coco":
        coco = coco_eval(dets, dataset)
        per_class, headline = coco.per_class_ap, coco.stats["AP"]
        # COCOeval's -1 (no GT in that area range) becomes NaN, like a class without GT
        coco_stats = {
            keys.COCO_PREFIX + name: v if v >= 0 else float("nan") for name, v in coco.stats.items()
        }
    else:
        ap = voc.ap_11point if metric == "voc07" else voc.ap_area
        per_class = {name: float(v) for name, v in zip(voc.class_names, ap, strict=True)}
        headline = voc.map_11point if metric == "voc07" else voc.map_area
    metrics = {keys.MAP: headline, keys.MAP_AREA: voc.map_area, **coco_stats}
    metrics.update({keys.AP_PREFIX + name: v for name, v in per_class.items()})
    return metrics, per_class
