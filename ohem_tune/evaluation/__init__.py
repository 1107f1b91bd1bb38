"""Inference (single/multi-scale, iterative bbox regression + voting) and VOC / COCO evaluation.

`evaluate(model, dataset, cfg, device) -> EvalResult` is the entry point the trainer and
`ohem-tune eval` use; `voc_eval` and `coco_eval` are pure functions over detections + ground truth.
"""

from ohem_tune.evaluation.coco import CocoResult, coco_eval, to_coco_results
from ohem_tune.evaluation.detections import Detections, PerImageDetections, validate_detections
from ohem_tune.evaluation.evaluator import EvalResult, detect, evaluate
from ohem_tune.evaluation.metrics import compute_metrics
from ohem_tune.evaluation.voc import VocResult, voc_ap, voc_eval

__all__ = [
    "CocoResult",
    "Detections",
    "EvalResult",
    "PerImageDetections",
    "VocResult",
    "coco_eval",
    "compute_metrics",
    "detect",
    "evaluate",
    "to_coco_results",
    "validate_detections",
    "voc_ap",
    "voc_eval",
]
