"""COCO AP through pycocotools' COCOeval: detections -> COCO results, dataset -> COCO ground truth.

Boxes convert with the inclusive convention (w = x2 - x1 + 1), image ids are the dataset's own
(COCO integer ids; other datasets use the record index) and category ids come from
`DetectionDataset.category_ids` (label k -> category_ids[k - 1]; labels themselves if absent).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ohem_tune.data.records import DetectionDataset
from ohem_tune.errors import EvaluationError
from ohem_tune.evaluation.detections import Detections, validate_detections

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
STAT_NAMES += ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class CocoResult:
    """The 12 COCOeval summary stats by name, and per-class AP@[.5:.95] (NaN without GT)."""

    stats: dict[str, float]
    per_class_ap: dict[str, float]


def coco_image_ids(dataset: DetectionDataset) -> list[int]:
    """COCO image id of each record: its own integer id, else its index in the dataset."""
    ids = [r.image_id for r in dataset.records]
    if all(isinstance(i, int | np.integer) for i in ids) and len(set(ids)) == len(ids):
        return [int(i) for i in ids]
    return list(range(len(ids)))


def coco_category_ids(dataset: DetectionDataset) -> list[int]:
    """COCO category id of labels 1..K."""
    if dataset.category_ids is None:
        return list(range(1, dataset.num_classes + 1))
    if len(dataset.category_ids) != dataset.num_classes:
        raise EvaluationError(
            f"dataset {dataset.name!r}: {len(dataset.category_ids)} category ids for "
            f"{dataset.num_classes} classes; category_ids must map every label"
        )
    return [int(c) for c in dataset.category_ids]


def to_coco_results(
    dets: Detections, dataset: DetectionDataset, source: str = "detections"
) -> list[dict[str, Any]]:
    """Detections in COCO's result format: image_id, category_id, bbox [x, y, w, h], score."""
    image_index = validate_detections(dets, dataset, source)
    image_ids = np.asarray(coco_image_ids(dataset), dtype=np.int64)[image_index]
    category_ids = np.asarray(coco_category_ids(dataset), dtype=np.int64)[dets.labels - 1]
    xywh = np.column_stack(
        [
            dets.boxes[:, 0],
            dets.boxes[:, 1],
            dets.boxes[:, 2] - dets.boxes[:, 0] + 1.0,
            dets.boxes[:, 3] - dets.boxes[:, 1] + 1.0,
        ]
    )
    columns = (image_ids.tolist(), category_ids.tolist(), xywh.tolist(), dets.scores.tolist())
    rows = zip(*columns, strict=True)
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in rows]


def dataset_to_coco(dataset: DetectionDataset) -> dict[str, Any]:
    """COCO ground-truth dict built from the records (crowd and difficult boxes become iscrowd).

    COCOeval's only "ignore" mechanism is iscrowd, so VOC-style difficult boxes are passed as crowd
    regions: detections on them are neither true nor false positives.
    """
    image_ids = coco_image_ids(dataset)
    category_ids = coco_category_ids(dataset)
    images, annotations = [], []
    for image_id, record in zip(image_ids, dataset.records, strict=True):
        images.append(
            {
                "id": image_id,
                "width": int(record.width),
                "height": int(record.height),
                "file_name": str(record.path),
            }
        )
        ignored = np.asarray(record.difficult, bool).copy()
        if record.iscrowd is not None:
            ignored |= np.asarray(record.iscrowd, bool)
        for box, label, crowd in zip(
            np.asarray(record.boxes, np.float64).reshape(-1, 4), record.labels, ignored, strict=True
        ):
            w, h = box[2] - box[0] + 1.0, box[3] - box[1] + 1.0
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[int(label) - 1],
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(crowd),
                }
            )
    categories = [
        {"id": c, "name": name} for c, name in zip(category_ids, dataset.class_names, strict=True)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def _ground_truth(dataset: DetectionDataset):
    """A pycocotools COCO object: the original JSON of a COCO-format dataset, else built.

    The original file keeps what the records drop (segmentation areas for the s/m/l ranges, crowd
    regions exactly as annotated), so COCO numbers match the official evaluation.
    """
    from pycocotools.coco import COCO

    path = dataset.meta.get("json") if dataset.meta.get("format") == "coco" else None
    if path and Path(path).is_file():
        with _quiet():
            gt = COCO(str(path))
        if set(coco_image_ids(dataset)) <= set(gt.getImgIds()):
            return gt
    gt = COCO()
    gt.dataset = dataset_to_coco(dataset)
    with _quiet():
        gt.createIndex()
    return gt


def coco_eval(
    dets: Detections, dataset: DetectionDataset, source: str = "detections"
) -> CocoResult:
    """COCOeval (bbox) of the detections against the dataset's ground truth: all 12 stats."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = to_coco_results(dets, dataset, source)
    gt = _ground_truth(dataset)
    with _quiet():
        if results:
            dt = gt.loadRes(results)
        else:  # loadRes rejects an empty list; an empty result set scores 0 where GT exist
            dt = COCO()
            dt.dataset = {"images": list(gt.dataset["images"]), "annotations": []}
            dt.dataset["categories"] = list(gt.dataset["categories"])
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = coco_image_ids(dataset)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}
    return CocoResult(stats, _per_class_ap(evaluator, dataset))


def _per_class_ap(evaluator: Any, dataset: DetectionDataset) -> dict[str, float]:
    """AP@[.5:.95] per class (all areas, 100 dets), as COCOeval's summary averages it."""
    precision = evaluator.eval["precision"]  # (T, R, K, A, M), -1 where undefined
    category_ids = coco_category_ids(dataset)
    out: dict[str, float] = {}
    for name, cat in zip(dataset.class_names, category_ids, strict=True):
        k = list(evaluator.params.catIds).index(cat)
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        out[name] = float(values.mean()) if values.size else float("nan")
    return out


def write_coco_results(dets: Detections, dataset: DetectionDataset, path: str | Path) -> Path:
    """Write detections as a COCO results JSON file (what the COCO test server takes)."""
    path = Path(path)
    path.write_text(json.dumps(to_coco_results(dets, dataset)))
    return path
