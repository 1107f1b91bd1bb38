"""Iterative bounding-box regression with box voting (MR-CNN, Gidaris & Komodakis 2015): "+B".

Iteration 1 scores the proposals and regresses them with the class-specific regressor: each
(proposal, class) over `test.score_thresh` becomes a candidate (regressed box, proposal's score),
pruned by per-class NMS at 0.95. Each later iteration re-scores the previous candidates' boxes
(another RoI-head pass on the same conv features) and regresses them again: candidate t is
(box regressed from candidate t-1's box, the score of candidate t-1's box) — MR-CNN's pairing,
so one iteration without voting is the standard Fast R-CNN test. The candidates of all iterations
are united per class, filtered by the score threshold, reduced by NMS (`test.nms_thresh`) and
`test.max_per_image` (per image or per class: `test.detections_per`), and every kept box is
replaced by the weighted mean of the voters of its class with IoU >= `test.vote_iou` to it; its
score is kept. Voters (`test.vote_voters`): the united candidates over the score threshold
("thresholded") or all of them ("all", MR-CNN's code); weights (`test.vote_weight`): max(0, score)
or MR-CNN's `eps + max(0, score + test.vote_add_val)` (docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ohem_tune.config.test import TestConfig
from ohem_tune.evaluation.boxes import batched_nms, box_voting, clip_boxes
from ohem_tune.evaluation.candidates import Candidates, class_candidates, keep_top
from ohem_tune.evaluation.pyramid import PyramidFeatures, PyramidImage

PRUNE_NMS_IOU = 0.95  # MR-CNN's near-duplicate pruning of the first iteration's candidates


def rescore_and_regress(
    model: torch.nn.Module,
    pyramid: PyramidFeatures,
    batch: Sequence[PyramidImage],
    current: Sequence[Candidates],
) -> list[Candidates]:
    """One more iteration: score each candidate's box for its class and regress it again."""
    logits, deltas = pyramid.score([c.boxes for c in current])
    probs = torch.softmax(logits, dim=1)
    boxes = model.decode_boxes(torch.cat([c.boxes for c in current]), deltas)
    labels = torch.cat([c.labels for c in current])
    rows = torch.arange(len(labels), device=labels.device)
    new_scores = probs[rows, labels].split([len(c.labels) for c in current])
    new_boxes = boxes[rows, labels].split([len(c.labels) for c in current])
    return [
        Candidates(clip_boxes(b, img.height, img.width), s, c.labels)
        for img, c, b, s in zip(batch, current, new_boxes, new_scores, strict=True)
    ]


def iterative_detect(
    model: torch.nn.Module,
    pyramid: PyramidFeatures,
    batch: Sequence[PyramidImage],
    class_boxes: Sequence[torch.Tensor],
    class_scores: Sequence[torch.Tensor],
    test: TestConfig,
) -> list[Candidates]:
    """Final detections of each image: iterate, unite, NMS, cap, vote (see the module docstring).

    class_boxes[i] (R_i, K+1, 4) are image i's regressed, clipped proposals and class_scores[i]
    (R_i, K+1) their softmax scores: the first iteration, already computed by the caller.
    """
    current = []
    for boxes, scores in zip(class_boxes, class_scores, strict=True):
        cands = class_candidates(boxes, scores, test.score_thresh)
        if len(cands.scores):
            cands = cands.take(batched_nms(cands.boxes, cands.scores, cands.labels, PRUNE_NMS_IOU))
        current.append(cands)
    history = [[c] for c in current]
    for _ in range(test.bbox_iters - 1):
        if sum(len(c.labels) for c in current) == 0:
            break
        current = rescore_and_regress(model, pyramid, batch, current)
        for past, cands in zip(history, current, strict=True):
            past.append(cands)

    out = []
    for past, img in zip(history, batch, strict=True):
        every = Candidates.cat(past)
        union = every.take(torch.nonzero(every.scores > test.score_thresh).flatten())
        kept = keep_top(union, test.nms_thresh, test.max_per_image, test.detections_per)
        voters = every if test.vote_voters == "all" else union
        voted = box_voting(
            kept.boxes,
            voters.boxes,
            voters.scores,
            test.vote_iou,
            kept.labels,
            voters.labels,
            weight=test.vote_weight,
            add_val=test.vote_add_val,
        )
        voted = clip_boxes(voted, img.height, img.width)  # a weighted mean may round past the edge
        out.append(Candidates(voted, kept.scores, kept.labels))
    return out
