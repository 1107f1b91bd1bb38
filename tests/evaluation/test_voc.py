"""VOC AP on hand-computed cases, and against the devkit's per-detection loop on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ohem_tune import tracking_keys as keys
from ohem_tune.evaluation.metrics import compute_metrics
from ohem_tune.evaluation.voc import _class_score_order, voc_ap, voc_eval
from tests.evaluation.helpers import dataset, dets, record
from tests.evaluation.voc_loop import voc_eval_loop

A = (10, 10, 29, 29)  # 20 x 20 boxes (inclusive)
B = (50, 50, 69, 69)
C = (10, 60, 29, 79)


def test_perfect_detector_has_ap_one():
    data = dataset([record("i1", [A, B], [1, 2]), record("i2", [C], [1])], class_names=("a", "b"))
    result = voc_eval(dets([("i1", 1, *A, 0.9), ("i1", 2, *B, 0.8), ("i2", 1, *C, 0.7)]), data)
    assert result.ap_11point.tolist() == [1.0, 1.0]
    assert result.ap_area.tolist() == [1.0, 1.0]
    assert result.map_11point == 1.0 and result.map_area == 1.0
    assert result.num_positives.tolist() == [2, 1]


def test_known_ranking_gives_hand_computed_ap():
    # 3 positives; ranked TP, FP, TP, FP, TP:
    # precision 1, 1/2, 2/3, 2/4, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 1.
    data = dataset([record("i1", [A, B], [1, 1]), record("i2", [C], [1])])
    miss = (80, 0, 99, 19)
    table = dets(
        [
            ("i1", 1, *A, 0.9),
            ("i1", 1, *miss, 0.8),
            ("i1", 1, *B, 0.7),
            ("i2", 1, *miss, 0.6),
            ("i2", 1, *C, 0.5),
        ]
    )
    result = voc_eval(table, data)
    # area: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 3/5 on (2/3, 1]
    assert result.ap_area[0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-12)
    # 11-point: t in 0..0.3 -> 1 (4 points), 0.4..0.6 -> 2/3 (3), 0.7..1.0 -> 3/5 (4)
    assert result.ap_11point[0] == pytest.approx((4 * 1 + 3 * 2 / 3 + 4 * 3 / 5) / 11, abs=1e-12)


def test_difficult_gt_is_neither_tp_nor_fp_nor_positive():
    data = dataset([record("i1", [A, B], [1, 1], difficult=[True, False])])
    # the higher-scored detection hits the difficult box: ignored, so AP stays 1
    result = voc_eval(dets([("i1", 1, *A, 0.9), ("i1", 1, *B, 0.8)]), data)
    assert result.num_positives[0] == 1
    assert result.ap_area[0] == 1.0 and result.ap_11point[0] == 1.0
    # the same detections without the flag: A is a positive too, and found
    plain = dataset([record("i1", [A, B], [1, 1])])
    assert voc_eval(dets([("i1", 1, *B, 0.8)]), plain).ap_area[0] == 0.5
    # a detection on nothing at the same rank is a false positive: AP drops
    far = (80, 80, 99, 99)
    fp_first = voc_eval(dets([("i1", 1, *far, 0.9), ("i1", 1, *B, 0.8)]), data)
    assert fp_first.ap_area[0] == 0.5


def test_duplicate_detections_are_false_positives():
    data = dataset([record("i1", [A, B], [1, 1])])
    near_a = (11, 11, 29, 29)
    result = voc_eval(dets([("i1", 1, *A, 0.9), ("i1", 1, *near_a, 0.8), ("i1", 1, *B, 0.7)]), data)
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    assert result.ap_area[0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)
    assert result.ap_11point[0] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11, abs=1e-12)


def test_duplicate_is_fp_even_when_another_gt_overlaps_it():
    # the devkit matches only the best-overlapping GT: a second hit on it is FP even though an
    # unmatched GT also overlaps it by > 0.5
    g1, g2 = (0, 0, 19, 19), (0, 0, 19, 23)
    data = dataset([record("i1", [g1, g2], [1, 1])])
    result = voc_eval(dets([("i1", 1, *g1, 0.9), ("i1", 1, *g1, 0.8)]), data)
    assert result.ap_area[0] == 0.5  # recall never passes 1/2
    assert voc_eval(dets([("i1", 1, *g1, 0.9), ("i1", 1, *g2, 0.8)]), data).ap_area[0] == 1.0


def test_class_without_gt_is_nan_and_left_out_class_without_detections_is_zero():
    data = dataset([record("i1", [A, B], [1, 2])], class_names=("a", "b", "c"))
    result = voc_eval(dets([("i1", 1, *A, 0.9), ("i1", 3, *C, 0.5)]), data)
    assert result.ap_area[0] == 1.0
    assert result.ap_area[1] == 0.0 and result.ap_11point[1] == 0.0  # GT, no detections
    assert math.isnan(result.ap_area[2]) and math.isnan(result.ap_11point[2])  # no GT
    assert result.map_area == 0.5 and result.map_11point == 0.5  # mean of classes a and b
    assert result.num_detections.tolist() == [1, 0, 1]


def test_empty_images_only_add_false_positives():
    base = [record("i1", [A], [1])]
    with_empty = base + [record("e1"), record("e2")]
    one = dets([("i1", 1, *A, 0.8)])
    assert voc_eval(one, dataset(with_empty)).ap_area[0] == 1.0
    # a higher-scored detection on an empty image is a false positive
    fp_empty = dets([("e1", 1, *A, 0.9), ("i1", 1, *A, 0.8)])
    assert voc_eval(fp_empty, dataset(with_empty)).ap_area[0] == 0.5
    # no detections at all
    assert voc_eval(dets([]), dataset(with_empty)).ap_area[0] == 0.0
    # nothing but empty images: AP undefined
    assert math.isnan(voc_eval(dets([]), dataset([record("e1")])).map_11point)


def test_iou_uses_plus_one_and_strict_threshold():
    gt = (0, 0, 9, 9)  # 10 x 10 = 100 pixels
    data = dataset([record("i1", [gt], [1])])

    def ap(box):
        return voc_eval(dets([("i1", 1, *box, 0.9)]), data).ap_area[0]

    assert ap((0, 0, 9, 19)) == 0.0  # 100 / 200 = 0.5 exactly: not > 0.5
    assert ap((0, 0, 9, 18)) == 1.0  # 100 / 190 > 0.5 (without +1: 81 / 162 = 0.5, a miss)
    assert ap((0, 0, 4, 9)) == 0.0  # 50 / 100 = 0.5 exactly
    assert ap((0, 0, 5, 9)) == 1.0  # 60 / 100


def test_voc_ap_edge_cases():
    assert voc_ap(np.array([]), np.array([]), use_07_metric=True) == 0.0
    assert voc_ap(np.array([]), np.array([]), use_07_metric=False) == 0.0
    # recall reaching only 0.5: the 11-point metric counts 6 thresholds
    assert voc_ap(np.array([0.5]), np.array([1.0]), use_07_metric=True) == pytest.approx(6 / 11)


def _random_case(rng: np.random.Generator, num_images: int = 40, num_classes: int = 3):
    records, rows = [], []
    for i in range(num_images):
        g = int(rng.integers(0, 5))
        xy = rng.uniform(0, 60, (g, 2))
        wh = rng.uniform(5, 40, (g, 2))
        boxes = np.round(np.concatenate([xy, xy + wh], 1))
        labels = rng.integers(1, num_classes + 1, g)
        records.append(record(f"img{i}", boxes, labels, rng.random(g) < 0.2))
        for box, label in zip(boxes, labels, strict=True):
            for _ in range(int(rng.integers(0, 3))):  # hits and duplicates, jittered
                b = box + rng.normal(0, 3, 4)
                b = np.r_[np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])]
                rows.append((f"img{i}", int(label), *b, round(float(rng.random()), 2)))
        for _ in range(int(rng.integers(0, 4))):  # background false positives, tied scores
            xy = rng.uniform(0, 80, 2)
            b = (*xy, *(xy + rng.uniform(3, 20, 2)))
            rows.append((f"img{i}", int(rng.integers(1, num_classes + 1)), *b, 0.5))
    return dataset(records, [f"c{k}" for k in range(num_classes)]), dets(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_matches_devkit_loop_on_random_data(seed):
    data, table = _random_case(np.random.default_rng(seed))
    result = voc_eval(table, data)
    loop07, loop10 = voc_eval_loop(table, data)
    np.testing.assert_allclose(result.ap_11point, loop07, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.ap_area, loop10, rtol=0, atol=1e-12)
    assert 0 < result.map_area < 1  # a non-trivial case


@pytest.mark.parametrize(
    ("metric", "expected"),
    [("voc07", (4 * 1 + 3 * 2 / 3 + 4 * 3 / 5) / 11), ("voc10", (1 + 2 / 3 + 3 / 5) / 3)],
)
def test_headline_metric_follows_test_metric(metric, expected):
    data = dataset([record("i1", [A, B], [1, 1]), record("i2", [C], [1])], ("a", "b"))
    miss = (80, 0, 99, 19)
    table = dets(
        [
            ("i1", 1, *A, 0.9),
            ("i1", 1, *miss, 0.8),
            ("i1", 1, *B, 0.7),
            ("i2", 1, *miss, 0.6),
            ("i2", 1, *C, 0.5),
        ]
    )
    metrics, per_class = compute_metrics(table, data, metric)
    assert metrics[keys.MAP] == pytest.approx(expected, abs=1e-12)  # class b has no GT: left out
    assert metrics[keys.MAP_AREA] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-12)
    assert metrics[keys.AP_PREFIX + "a"] == per_class["a"] == metrics[keys.MAP]
    assert math.isnan(metrics[keys.AP_PREFIX + "b"])


def test_class_score_order_is_a_stable_two_key_sort():
    rng = np.random.default_rng(0)
    labels = rng.integers(1, 4, 500)
    scores = np.round(rng.random(500), 1)  # many ties
    expected = np.lexsort((np.arange(500), -scores, labels))
    np.testing.assert_array_equal(_class_score_order(labels, scores), expected)
    # labels too large for the packed key take the two-sort path, same order
    big = labels * 2**55
    np.testing.assert_array_equal(_class_score_order(big, scores), expected)
