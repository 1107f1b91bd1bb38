"""+B on hand-built candidates: which candidates vote and how they weigh (score vs MR-CNN)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from ohem_tune.config.test import TestConfig
from ohem_tune.evaluation.iterative import iterative_detect

SHIFT = 4.0  # every regression moves a box right and down by 4 px
RESCORED = 0.01  # the second iteration scores every box 0.01 (below score_thresh 0.05)


class FakeModel:
    """decode_boxes: each box moved by SHIFT for every class (the regression of both passes)."""

    def decode_boxes(self, rois: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        return rois[:, None, :].expand(len(rois), 2, 4) + SHIFT


class FakePyramid:
    """score: class 1 at probability RESCORED for any box (logits of a 2-way softmax)."""

    def score(self, boxes):
        n = sum(len(b) for b in boxes)
        logits = torch.tensor([math.log(1 - RESCORED), math.log(RESCORED)]).repeat(n, 1)
        return logits, torch.zeros(n, 8)


def _detect(**test) -> torch.Tensor:
    """The voted box of one proposal [0, 0, 49, 49] scored 0.9, after 2 iterations."""
    cfg = TestConfig(iterative_bbox=True, bbox_iters=2, score_thresh=0.05, **test)
    proposal = torch.tensor([[0.0, 0.0, 49.0, 49.0]])
    class_boxes = [proposal[:, None, :].expand(1, 2, 4) + SHIFT]  # iteration 1, regressed once
    class_scores = [torch.tensor([[0.1, 0.9]])]
    image = SimpleNamespace(height=200, width=200)
    out = iterative_detect(FakeModel(), FakePyramid(), [image], class_boxes, class_scores, cfg)
    assert out[0].labels.tolist() == [1] and out[0].scores.tolist() == pytest.approx([0.9])
    return out[0].boxes[0]


def _box(shift: float) -> list[float]:
    return [SHIFT + shift, SHIFT + shift, 49 + SHIFT + shift, 49 + SHIFT + shift]


def test_thresholded_voters_leave_out_the_rescored_candidate():
    # iteration 2's candidate (moved 4 px more, score 0.01) is under score_thresh: no vote
    for weight in ("score", "mrcnn"):
        voted = _detect(vote_voters="thresholded", vote_weight=weight)
        assert voted.tolist() == pytest.approx(_box(0.0))


def test_all_voters_with_score_weights():
    voted = _detect(vote_voters="all", vote_weight="score")
    assert voted.tolist() == pytest.approx(_box(SHIFT * RESCORED / (0.9 + RESCORED)))


def test_all_voters_with_mrcnn_weights():
    voted = _detect(vote_voters="all", vote_weight="mrcnn", vote_add_val=1.5)
    w1, w2 = 0.9 + 1.5, RESCORED + 1.5
    assert voted.tolist() == pytest.approx(_box(SHIFT * w2 / (w1 + w2)), abs=1e-4)
