"""Inference on the tiny synthetic set with the real model: pyramid levels, NMS, regression, +B."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ohem_tune import tracking_keys as keys
from ohem_tune.config import Config
from ohem_tune.data.build import build_dataset
from ohem_tune.evaluation import evaluate
from ohem_tune.evaluation.boxes import box_iou
from ohem_tune.evaluation.evaluator import detect
from ohem_tune.evaluation.pyramid import PyramidFeatures, assign_levels, image_batches
from ohem_tune.modeling import build_model

BBOX_STD_X = 0.1  # the model's default bbox_reg_stds[0]


def constant_head_model(cfg: Config, num_classes: int, label: int, shift_x: float = 0.0):
    """The real model with a head whose output ignores the features: class `label` wins (p~0.98)
    everywhere and every box moves right by shift_x of its width."""
    torch.manual_seed(0)
    model = build_model(cfg, num_classes)
    head = model.roi_head
    with torch.no_grad():
        head.cls_score.weight.zero_()
        head.cls_score.bias.fill_(-4.0)
        head.cls_score.bias[label] = 4.0
        head.bbox_pred.weight.zero_()
        head.bbox_pred.bias.zero_()
        head.bbox_pred.bias.view(-1, 4)[:, 0] = shift_x / BBOX_STD_X
    return model


@pytest.fixture()
def test_set(tiny_cfg):
    return build_dataset(tiny_cfg, "test")


def test_assign_levels_picks_scaled_area_closest_to_canonical():
    boxes = torch.tensor([[0.0, 0, 223, 223], [0, 0, 111, 111], [0, 0, 447, 447], [0, 0, 9, 9]])
    levels = assign_levels(boxes, torch.tensor([0.5, 1.0, 2.0]), canonical_size=224)
    assert levels.tolist() == [1, 2, 0, 2]
    assert assign_levels(boxes, torch.tensor([1.0]), 224).tolist() == [0, 0, 0, 0]
    per_box = torch.tensor([[0.5, 1.0], [0.5, 1.0], [1.0, 2.0], [1.0, 2.0]])  # (R, L)
    assert assign_levels(boxes, per_box, 224).tolist() == [1, 1, 0, 1]


def test_multiscale_pools_each_box_from_its_level(tiny_cfg, test_set):
    cfg = tiny_cfg
    cfg.test.scales = [48, 96, 160]
    cfg.test.canonical_roi_size = 24  # small images: spread the proposals over the levels
    cfg.test.max_size = 400
    torch.manual_seed(0)
    model = build_model(cfg, test_set.num_classes).eval()
    batch = next(iter(image_batches(test_set.records[:2], cfg)))
    with torch.inference_mode():
        pyramid = PyramidFeatures(model, batch, torch.device("cpu"), cfg.test.canonical_roi_size)
        boxes = [img.proposals for img in batch]
        logits, _ = pyramid.score(boxes)
        levels = torch.cat(
            [
                assign_levels(b, torch.tensor(img.scales), 24)
                for b, img in zip(boxes, batch, strict=True)
            ]
        )
        assert len(set(levels.tolist())) == 3  # every level is used
        for lvl, scale in enumerate(cfg.test.scales):
            cfg.test.scales = [scale]
            single_batch = next(iter(image_batches(test_set.records[:2], cfg)))
            single = PyramidFeatures(model, single_batch, torch.device("cpu"))
            single_logits, _ = single.score(boxes)
            rows = levels == lvl
            torch.testing.assert_close(logits[rows], single_logits[rows])


@pytest.mark.parametrize("scales", [[96], [64, 96, 128]])
def test_detections_are_nms_of_regressed_proposals(tiny_cfg, test_set, scales):
    cfg = tiny_cfg
    cfg.test.scales = scales
    cfg.test.max_per_image = 20
    model = constant_head_model(cfg, test_set.num_classes, label=2, shift_x=0.1)
    detections = detect(model, test_set, cfg, "cpu")
    for record, per_class in zip(test_set.records, detections, strict=True):
        assert [len(d) for k, d in enumerate(per_class) if k != 1] == [0, 0, 0]  # only label 2
        found = torch.as_tensor(per_class[1])
        assert 0 < len(found) <= 20
        expected_score = torch.softmax(torch.tensor([-4.0, -4, 4, -4, -4]), 0)[2]
        torch.testing.assert_close(found[:, 4], expected_score.expand(len(found)))
        # every box is a proposal moved right by 10% of its width, then clipped
        props = torch.as_tensor(record.proposals)
        moved = props.clone()
        moved[:, 0::2] += 0.1 * (props[:, 2:3] - props[:, 0:1] + 1)
        moved[:, 0::2] = moved[:, 0::2].clamp(0, record.width - 1)
        gap = (found[:, None, :4] - moved[None]).abs().amax(dim=2).min(dim=1).values
        assert gap.max() < 1e-3
        iou = box_iou(found[:, :4], found[:, :4]) - torch.eye(len(found))
        assert iou.max() <= cfg.test.nms_thresh + 1e-6  # kept boxes do not overlap > 0.3


def test_iterative_regression_runs_its_iterations(tiny_cfg, test_set):
    cfg = tiny_cfg
    cfg.test.iterative_bbox = True
    records = test_set.records[:3]
    subset = type(test_set)(test_set.name, test_set.class_names, records)

    def boxes(model, iters):
        cfg.test.bbox_iters = iters
        return [d[1] for d in detect(model, subset, cfg, "cpu")]

    still = constant_head_model(cfg, test_set.num_classes, label=2)
    # regression is the identity: the second iteration only repeats the candidates
    for one, two in zip(boxes(still, 1), boxes(still, 2), strict=True):
        np.testing.assert_allclose(one, two, rtol=0, atol=1e-4)
    moving = constant_head_model(cfg, test_set.num_classes, label=2, shift_x=0.1)
    one, two = boxes(moving, 1), boxes(moving, 2)
    assert any(len(a) != len(b) or not np.allclose(a, b) for a, b in zip(one, two, strict=True))
    for dets, record in zip(two, records, strict=True):
        assert (dets[:, 4] > cfg.test.score_thresh).all()
        assert (dets[:, 2] >= dets[:, 0]).all() and (dets[:, 2] <= record.width - 1).all()


def test_evaluate_reports_metrics_and_leaves_model_and_rng_alone(tiny_cfg, test_set, tmp_path):
    cfg = tiny_cfg
    cfg.test.max_images = 5
    torch.manual_seed(0)
    model = build_model(cfg, test_set.num_classes).train()
    rng_before = torch.get_rng_state()
    result = evaluate(model, test_set, cfg, "cpu")
    assert torch.equal(torch.get_rng_state(), rng_before)  # no draw from the trainer's stream
    assert model.training
    assert len(result.detections) == 5 and len(result.dataset) == 5
    names = test_set.class_names
    assert set(result.metrics) == {keys.MAP, keys.MAP_AREA} | {keys.AP_PREFIX + n for n in names}
    assert result.metrics[keys.MAP] == pytest.approx(np.nanmean(list(result.per_class_ap.values())))
    again = evaluate(model, test_set, cfg, "cpu")
    assert again.metrics == pytest.approx(result.metrics, nan_ok=True)  # deterministic
    for per_class in result.detections:
        assert sum(len(d) for d in per_class) <= cfg.test.max_per_image
    dets_path, metrics_path = result.save(tmp_path)
    import json

    import pandas as pd

    frame = pd.read_parquet(dets_path)
    assert len(frame) == sum(len(d) for per in result.detections for d in per)
    assert set(frame["class_name"]) <= set(names)
    saved = json.loads(metrics_path.read_text())
    assert saved["num_images"] == 5 and saved["metrics"][keys.MAP] == result.metrics[keys.MAP]


def test_evaluate_with_coco_metric(tiny_cfg, test_set):
    cfg = tiny_cfg
    cfg.test.metric = "coco"
    torch.manual_seed(0)
    model = constant_head_model(cfg, test_set.num_classes, label=1)
    metrics = evaluate(model, test_set, cfg, "cpu").metrics
    coco_keys = {k for k in metrics if k.startswith(keys.COCO_PREFIX)}
    assert len(coco_keys) == 12
    assert metrics[keys.MAP] == metrics[keys.COCO_PREFIX + "AP"]
    assert math.isnan(metrics[keys.COCO_PREFIX + "APl"])  # no large objects in 96-px images


def test_image_without_proposals_has_no_detections(tiny_cfg, test_set):
    records = [replace(r) for r in test_set.records[:3]]
    records[1].proposals = np.zeros((0, 4), np.float32)
    subset = type(test_set)(test_set.name, test_set.class_names, records)
    model = constant_head_model(tiny_cfg, test_set.num_classes, label=2)
    for iterative in (False, True):
        tiny_cfg.test.iterative_bbox = iterative
        detections = detect(model, subset, tiny_cfg, "cpu")
        assert [sum(len(d) for d in per) > 0 for per in detections] == [True, False, True]


def test_an_image_without_proposals_gives_no_detections_alone_or_in_a_batch(tiny_cfg: Config):
    # a proposal file may hold an empty cell, and min_size / unique_boxes can remove every box
    # of an image; the paper profile evaluates one image per pass (test.batch_images: 1)
    test = build_dataset(tiny_cfg, "test")
    records = [replace(test.records[0], proposals=np.zeros((0, 4), np.float32)), test.records[1]]
    test = replace(test, records=records)
    torch.manual_seed(0)
    model = build_model(tiny_cfg, test.num_classes).eval()
    for batch_images in (1, 2):
        tiny_cfg.test.batch_images = batch_images
        dets = detect(model, test, tiny_cfg, torch.device("cpu"))
        assert len(dets) == 2
        assert sum(len(k) for k in dets[0]) == 0  # no RoI, no detection
        assert sum(len(k) for k in dets[1]) > 0
