"""Inclusive-pixel box ops: IoU, NMS and MR-CNN box voting on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.evaluation.boxes import box_iou, box_voting, clip_boxes, nms


def test_iou_uses_plus_one_pixel_convention():
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    b = torch.tensor([[0.0, 0.0, 4.0, 9.0], [10.0, 0.0, 19.0, 9.0]])
    assert box_iou(a, b).tolist() == [[0.5, 0.0]]  # 50 / 100; touching boxes do not overlap


def test_nms_suppresses_above_threshold_only():
    boxes = torch.tensor([[0.0, 0, 9, 9], [0, 0, 4, 9], [0, 0, 5, 9]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # IoU with the first: 0.5 (kept at thresh 0.5) and 0.6 (suppressed)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]


def test_box_voting_is_score_weighted_mean_of_overlapping_candidates():
    kept = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    cands = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 12.0, 12.0], [50.0, 50, 60, 60]])
    scores = torch.tensor([0.6, 0.2, 0.9])
    voted = box_voting(kept, cands, scores, vote_iou=0.5)
    # the far box does not vote: (0.6 * [0,0,10,10] + 0.2 * [2,2,12,12]) / 0.8
    assert voted[0].tolist() == pytest.approx([0.5, 0.5, 10.5, 10.5])  # IoU 81/161 >= 0.5
    # with classes, a candidate of another class does not vote
    same = box_voting(kept, cands, scores, 0.5, torch.tensor([1]), torch.tensor([1, 2, 1]))
    assert same.tolist() == [[0.0, 0.0, 10.0, 10.0]]


def test_clip_boxes_to_image():
    boxes = torch.tensor([[-5.0, -1.0, 120.0, 30.0]])
    assert clip_boxes(boxes, height=20, width=100).tolist() == [[0.0, 0.0, 99.0, 19.0]]
    # a sub-pixel box decoded with x2 < x1 (here at the border) becomes a one-pixel box
    thin = torch.tensor([[10.0, 19.5, 9.6, 25.0]])
    assert clip_boxes(thin, height=20, width=100).tolist() == [[10.0, 19.0, 10.0, 19.0]]
