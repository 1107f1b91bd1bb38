"""Ground-truth matching happens in the image's original pixels; only pooling sees the scale."""

from __future__ import annotations

import torch

from ohem_tune.modeling.boxes import encode
from ohem_tune.modeling.matching import match_minibatch


def test_labels_and_targets_come_from_original_pixels_rois_are_scaled_for_pooling():
    # with +1 widths an IoU changes with the resize: this RoI overlaps its GT at exactly 0.5
    # in the original image (100 / 200 pixels) but at 361 / 741 = 0.487 once doubled, where
    # fast-rcnn (overlaps computed in the roidb, before any resize) still calls it foreground
    gt = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    roi = torch.tensor([[0.0, 0.0, 9.0, 19.0]])
    rois = [torch.cat([gt, roi])]
    out = match_minibatch(rois, [gt], [torch.tensor([3])], 0.5, scales=[2.0])
    assert out.max_iou.tolist() == [1.0, 0.5]
    assert out.labels.tolist() == [3, 3]
    assert torch.equal(out.targets[1], encode(roi, gt)[0])  # the original-pixel deltas
    assert torch.equal(out.rois[:, 1:], rois[0] * 2.0)  # pooled on the doubled image
    # matched on the resized boxes instead, the RoI would have been background
    resized = match_minibatch([rois[0] * 2.0], [gt * 2.0], [torch.tensor([3])], 0.5)
    assert resized.labels.tolist() == [3, 0]
    # at scale 1 (the synthetic profiles) nothing changes, to the bit
    same = match_minibatch(rois, [gt], [torch.tensor([3])], 0.5, scales=[1.0])
    plain = match_minibatch(rois, [gt], [torch.tensor([3])], 0.5)
    assert all(torch.equal(a, b) for a, b in zip(
        (same.rois, same.labels, same.targets), (plain.rois, plain.labels, plain.targets),
        strict=True))  # fmt: skip
