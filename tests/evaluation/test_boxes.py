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


def test_mrcnn_vote_weight_differs_from_score_weight():
    kept = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    cands = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 12.0, 12.0]])
    scores = torch.tensor([0.6, 0.2])
    by_score = box_voting(kept, cands, scores, 0.5, weight="score")
    by_mrcnn = box_voting(kept, cands, scores, 0.5, weight="mrcnn", add_val=1.5)
    # score: weights 0.6, 0.2 -> shift 2 * 0.2 / 0.8 = 0.5; mrcnn: 2.1, 1.7 -> 2 * 1.7 / 3.8
    assert by_score[0].tolist() == pytest.approx([0.5, 0.5, 10.5, 10.5])
    shift = 2.0 * 1.7 / 3.8
    assert by_mrcnn[0].tolist() == pytest.approx([shift, shift, 10 + shift, 10 + shift])
    # MR-CNN's SVM-score case: a negative score weighs 0 under 'score', but votes under 'mrcnn'
    svm = torch.tensor([1.0, -1.0])
    assert box_voting(kept, cands, svm, 0.5, weight="score")[0].tolist() == [0.0, 0.0, 10.0, 10.0]
    shift = 2.0 * 0.5 / (2.5 + 0.5)
    assert box_voting(kept, cands, svm, 0.5, weight="mrcnn")[0].tolist() == pytest.approx(
        [shift, shift, 10 + shift, 10 + shift]
    )
    # every voter below -add_val: weights are eps each, so the plain mean (MATLAB's eps term)
    low = torch.tensor([-3.0, -2.0])
    mean = box_voting(kept, cands, low, 0.5, weight="mrcnn")
    assert mean[0].tolist() == pytest.approx([1.0, 1.0, 11.0, 11.0])
    assert box_voting(kept, cands, low, 0.5, weight="score").tolist() == kept.tolist()


def test_voting_by_class_matches_an_unbatched_vote_per_class():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 40
    cands = torch.cat([xy, xy + 10 + torch.rand(60, 2, generator=g) * 10], dim=1)
    scores, labels = torch.rand(60, generator=g), torch.randint(1, 4, (60,), generator=g)
    kept, kept_labels = cands[::6], labels[::6]
    voted = box_voting(kept, cands, scores, 0.5, kept_labels, labels, weight="mrcnn")
    for i in range(len(kept)):
        mine = labels == kept_labels[i]
        alone = box_voting(kept[i : i + 1], cands[mine], scores[mine], 0.5, weight="mrcnn")
        torch.testing.assert_close(voted[i], alone[0])


def test_clip_boxes_to_image():
    boxes = torch.tensor([[-5.0, -1.0, 120.0, 30.0]])
    assert clip_boxes(boxes, height=20, width=100).tolist() == [[0.0, 0.0, 99.0, 19.0]]
    # a sub-pixel box decoded with x2 < x1 (here at the border) becomes a one-pixel box
    thin = torch.tensor([[10.0, 19.5, 9.6, 25.0]])
    assert clip_boxes(thin, height=20, width=100).tolist() == [[10.0, 19.0, 10.0, 19.0]]


def test_box_voting_under_bf16_autocast_equals_fp32_voting():
    """Under autocast the weighted sum would run as a reduced-precision matmul (coordinates of
    hundreds of pixels times many voters); voting stays fp32 and matches the fp32 result."""
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=gen) * 6 + 400.0
    cands = torch.cat([xy, xy + 180.0 + torch.rand(300, 2, generator=gen)], dim=1)
    scores = torch.rand(300, generator=gen)
    kept = cands[:3]
    want = box_voting(kept, cands, scores, 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = box_voting(kept, cands, scores, 0.5)
    assert got.dtype == torch.float32
    assert torch.equal(got, want)
    assert not torch.equal(want.bfloat16().float(), want)  # bf16 could not have held these
