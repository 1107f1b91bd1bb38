"""Box coding and IoU follow Fast R-CNN's inclusive (+1) pixel convention."""

from __future__ import annotations

import numpy as np
import torch

from ohem_tune.data.boxes import box_iou as np_box_iou
from ohem_tune.modeling.boxes import box_iou, clip_boxes, decode, encode


def test_iou_matches_fast_rcnn_bbox_overlaps():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=gen) * 50
    wh = torch.rand(20, 2, generator=gen) * 30
    boxes = torch.cat([xy, xy + wh], dim=1)
    ours = box_iou(boxes[:10], boxes[10:]).numpy()
    ref = np_box_iou(boxes[:10].numpy(), boxes[10:].numpy())
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    # a 1-pixel box equals itself (IoU 1), which the +1 convention makes non-degenerate
    one = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert box_iou(one, one).item() == 1.0


def test_decode_inverts_encode():
    rois = torch.tensor([[0.0, 0.0, 9.0, 19.0], [5.0, 5.0, 40.0, 30.0]])
    gt = torch.tensor([[2.0, 1.0, 12.0, 15.0], [0.0, 8.0, 35.0, 33.0]])
    deltas = encode(rois, gt)
    out = decode(rois, deltas[:, None, :])[:, 0]
    torch.testing.assert_close(out, gt, atol=1e-4, rtol=0)


def test_clip_boxes_stays_inside_image():
    boxes = torch.tensor([[-5.0, -2.0, 200.0, 50.0]])
    assert clip_boxes(boxes, height=40, width=100).tolist() == [[0.0, 0.0, 99.0, 39.0]]
