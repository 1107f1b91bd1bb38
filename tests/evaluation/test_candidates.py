"""The test-time cap: per-class NMS, then max_per_image per image (all classes) or per class."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.evaluation.candidates import Candidates, keep_top, rank_within


def _hand_built() -> Candidates:
    """Class 1: four far-apart boxes scored 0.9, 0.8, 0.7, 0.6; class 2: three scored 0.85,
    0.5, 0.4; plus a class-1 near-duplicate of its best box (0.95 IoU, score 0.3)."""
    boxes, scores, labels = [], [], []
    for label, values in ((1, [0.9, 0.8, 0.7, 0.6]), (2, [0.85, 0.5, 0.4])):
        for j, score in enumerate(values):
            x = 100.0 * j
            boxes.append([x, 0.0, x + 49, 49.0])
            scores.append(score)
            labels.append(label)
    boxes.append([0.0, 0.0, 49.0, 48.0])  # duplicate of class 1's 0.9 box
    scores.append(0.3)
    labels.append(1)
    return Candidates(torch.tensor(boxes), torch.tensor(scores), torch.tensor(labels))


def _kept(cands: Candidates) -> list[tuple[int, float]]:
    return sorted(
        ((int(lab), round(float(s), 2)) for lab, s in zip(cands.labels, cands.scores, strict=True)),
        key=lambda t: -t[1],
    )


def test_per_image_cap_counts_all_classes_together():
    kept = keep_top(_hand_built(), nms_thresh=0.3, max_per_image=3, per="image")
    assert _kept(kept) == [(1, 0.9), (2, 0.85), (1, 0.8)]


def test_per_class_cap_counts_each_class():
    kept = keep_top(_hand_built(), nms_thresh=0.3, max_per_image=2, per="class")
    assert _kept(kept) == [(1, 0.9), (2, 0.85), (1, 0.8), (2, 0.5)]
    # a cap above every class's count keeps all NMS survivors (the duplicate is suppressed)
    everything = keep_top(_hand_built(), 0.3, 100, per="class")
    assert len(everything.scores) == 7
    assert 0.3 not in [round(float(s), 2) for s in everything.scores]


def test_the_two_caps_differ_on_the_same_detections():
    image = keep_top(_hand_built(), 0.3, 2, per="image")
    per_class = keep_top(_hand_built(), 0.3, 2, per="class")
    assert len(image.scores) == 2 and len(per_class.scores) == 4


def test_rank_within_groups_keeps_row_order():
    groups = torch.tensor([2, 1, 2, 2, 1, 3])
    assert rank_within(groups).tolist() == [0, 0, 1, 2, 1, 0]


def test_unknown_cap_scope_is_an_error():
    with pytest.raises(ValueError, match="per must be 'image' or 'class'"):
        keep_top(_hand_built(), 0.3, 2, per="batch")  # type: ignore[arg-type]
