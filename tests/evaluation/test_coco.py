"""COCO evaluation: our conversion + COCOeval equals pycocotools called by hand."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ohem_tune.data.coco import load_coco
from ohem_tune.evaluation.coco import STAT_NAMES, coco_eval, dataset_to_coco, to_coco_results
from ohem_tune.evaluation.detections import Detections
from tests.evaluation.helpers import dataset, dets, record

CATEGORY_IDS = (3, 7)  # non-contiguous on purpose: labels 1, 2 -> ids 3, 7


def _write_coco(tmp_path, rng):
    """A small COCO instances file (crowd region included) and detections on its images."""
    images, anns, rows = [], [], []
    for n in range(12):
        image_id = 100 + 3 * n  # original ids, not 0..N-1
        images.append({"id": image_id, "width": 200, "height": 160, "file_name": f"{n}.jpg"})
        for _ in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, 120), rng.uniform(0, 80)  # inside the image: no clipping
            w, h = rng.uniform(6, 70, 2)
            cat = int(rng.choice(CATEGORY_IDS))
            crowd = int(rng.random() < 0.1)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                }
            )
            label = CATEGORY_IDS.index(cat) + 1
            for _ in range(int(rng.integers(0, 3))):
                x1, y1 = x + rng.normal(0, 3), y + rng.normal(0, 3)
                x2, y2 = x1 + w * rng.uniform(0.8, 1.2) - 1, y1 + h * rng.uniform(0.8, 1.2) - 1
                rows.append((image_id, label, x1, y1, x2, y2, float(rng.random())))
        rows.append((image_id, 1, 5.0, 5.0, 40.0, 30.0, 0.05))  # a background detection
    cats = [{"id": c, "name": f"cat{c}"} for c in CATEGORY_IDS]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path, dets(rows)


def _by_hand(gt_path, table: Detections) -> np.ndarray:
    """pycocotools as its README shows it, results written by hand in xywh."""
    results = [
        {
            "image_id": int(image_id),
            "category_id": CATEGORY_IDS[int(label) - 1],
            "bbox": [b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1],
            "score": float(score),
        }
        for image_id, label, b, score in zip(
            table.image_ids, table.labels, table.boxes, table.scores, strict=True
        )
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_coco_eval_equals_pycocotools_by_hand(tmp_path):
    gt_path, table = _write_coco(tmp_path, np.random.default_rng(0))
    data = load_coco(gt_path, tmp_path)
    ours = coco_eval(table, data)
    expected = _by_hand(gt_path, table)
    assert list(ours.stats) == list(STAT_NAMES)
    np.testing.assert_array_equal(np.array(list(ours.stats.values())), expected)
    assert 0.0 < ours.stats["AP"] < 1.0
    assert set(ours.per_class_ap) == {"cat3", "cat7"}


def test_ground_truth_built_from_records_gives_the_same_stats(tmp_path):
    gt_path, table = _write_coco(tmp_path, np.random.default_rng(1))
    from_json = load_coco(gt_path, tmp_path)
    from_records = load_coco(gt_path, tmp_path)
    from_records.meta = {}  # forget the source file: GT is rebuilt from the records
    np.testing.assert_allclose(
        list(coco_eval(table, from_records).stats.values()),
        list(coco_eval(table, from_json).stats.values()),
        atol=1e-12,
    )


def test_perfect_detections_and_empty_detections():
    a, b = (10, 10, 49, 39), (60, 20, 99, 89)
    data = dataset([record("x", [a], [1]), record("y", [b], [2])], class_names=("p", "q"))
    perfect = coco_eval(dets([("x", 1, *a, 0.9), ("y", 2, *b, 0.8)]), data)
    assert perfect.stats["AP"] == pytest.approx(1.0)
    assert perfect.per_class_ap == pytest.approx({"p": 1.0, "q": 1.0})
    empty = coco_eval(Detections.empty(), data)
    assert empty.stats["AP"] == 0.0 and empty.stats["AR100"] == 0.0


def test_conversion_uses_inclusive_widths_record_index_ids_and_category_ids():
    data = dataset([record("voc_a"), record("voc_b")], class_names=("p", "q"))
    data.category_ids = [11, 22]
    out = to_coco_results(dets([("voc_b", 2, 10, 20, 19, 49, 0.5)]), data)
    assert out == [
        {"image_id": 1, "category_id": 22, "bbox": [10.0, 20.0, 10.0, 30.0], "score": 0.5}
    ]


def test_difficult_records_become_crowd_regions():
    data = dataset([record(1, [(0, 0, 9, 9), (20, 20, 39, 39)], [1, 1], [False, True])])
    gt = dataset_to_coco(data)
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 1]
    assert gt["annotations"][0]["area"] == 100.0 and gt["images"][0]["id"] == 1
