"""Bad detections get one clear EvaluationError; the table round-trips to per-image arrays."""

from __future__ import annotations

import numpy as np
import pytest

from ohem_tune.errors import EvaluationError
from ohem_tune.evaluation import Detections, coco_eval, voc_eval
from tests.evaluation.helpers import dataset, dets, record

DATA = dataset([record("i1", [(0, 0, 9, 9)], [1]), record("i2")], class_names=("cat", "dog"))
GOOD = ("i1", 1, 0.0, 0.0, 9.0, 9.0, 0.9)


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        (("i1", 1, np.nan, 0.0, 9.0, 9.0, 0.9), "NaN/inf"),
        (("i1", 1, 0.0, 0.0, np.inf, 9.0, 0.9), "NaN/inf"),
        (("i1", 1, 0.0, 0.0, 9.0, 9.0, np.nan), "NaN/inf"),
        (("i1", 1, 9.0, 0.0, 0.0, 9.0, 0.9), "inverted box"),
        (("i1", 1, 0.0, 9.0, 9.0, 8.0, 0.9), "inverted box"),
        (("i1", 3, 0.0, 0.0, 9.0, 9.0, 0.9), "unknown class id"),
        (("i1", 0, 0.0, 0.0, 9.0, 9.0, 0.9), "unknown class id"),
        (("nope", 1, 0.0, 0.0, 9.0, 9.0, 0.9), "image id absent"),
    ],
)
@pytest.mark.parametrize("evaluator", [voc_eval, coco_eval])
def test_bad_detections_raise_one_line_errors(row, needle, evaluator):
    with pytest.raises(EvaluationError) as info:
        evaluator(dets([GOOD, row]), DATA)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert "1 row(s)" in message  # names how many rows and the first bad one


def test_per_image_round_trip_and_frame():
    per_image = [
        [np.array([[0, 0, 9, 9, 0.9], [1, 1, 5, 5, 0.2]], np.float32), np.zeros((0, 5))],
        [np.zeros((0, 5)), np.array([[2, 2, 8, 8, 0.4]], np.float32)],
    ]
    table = Detections.from_per_image(per_image, DATA)
    assert table.labels.tolist() == [1, 1, 2]
    assert table.image_ids.tolist() == ["i1", "i1", "i2"]
    back = table.to_per_image(DATA)
    for got, want in zip(back, per_image, strict=True):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, np.asarray(w, np.float32).reshape(-1, 5))
    frame = table.to_frame(DATA.class_names)
    assert frame["class_name"].tolist() == ["cat", "cat", "dog"]
    again = Detections.from_frame(frame)
    np.testing.assert_array_equal(again.boxes, table.boxes)


def test_per_image_shape_errors():
    with pytest.raises(EvaluationError, match="1 images of detections for a dataset of 2"):
        Detections.from_per_image([[np.zeros((0, 5))] * 2], DATA)
    with pytest.raises(EvaluationError, match="1 class arrays for 2 classes"):
        Detections.from_per_image([[np.zeros((0, 5))], [np.zeros((0, 5))] * 2], DATA)
    with pytest.raises(EvaluationError, match=r"shape \(1, 4\)"):
        Detections.from_per_image([[np.zeros((1, 4)), np.zeros((0, 5))], [[], []]], DATA)


def test_duplicate_dataset_ids_are_rejected():
    twice = dataset([record("i1"), record("i1")])
    with pytest.raises(EvaluationError, match="appears twice"):
        voc_eval(dets([("i1", 1, 0, 0, 5, 5, 0.5)]), twice)


def test_integer_image_ids_match_their_text_form():
    coco_like = dataset([record(17, [(0, 0, 9, 9)], [1]), record(23)])
    as_text = dets([("17", 1, 0, 0, 9, 9, 0.9)])
    assert voc_eval(as_text, coco_like).ap_area[0] == 1.0
    with pytest.raises(EvaluationError, match="image id absent"):
        voc_eval(dets([("18", 1, 0, 0, 9, 9, 0.9)]), coco_like)
