"""OHEM: top-B after per-(image, label) NMS; the read-only pass keeps no autograd state."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.config import SamplerConfig, build_config
from ohem_tune.errors import ConfigError
from ohem_tune.modeling import build_model
from ohem_tune.modeling.boxes import box_iou
from ohem_tune.modeling.matching import match_minibatch
from ohem_tune.samplers import REGISTRY, RankingPass, build_sampler
from tests.samplers.helpers import GivenLosses, targets_from

# (image, box, IoU with GT, loss); the name is the RoI's index
HAND = [
    (0, [0, 0, 9, 9], 0.8, 5.0),  # 0 a: fg, kept
    (0, [0, 0, 9, 10], 0.7, 4.0),  # 1 b: fg, IoU 0.91 with a -> suppressed
    (0, [0, 0, 9, 10], 0.3, 3.0),  # 2 c: bg, same box as b but another label -> kept
    (0, [50, 50, 59, 59], 0.0, 2.0),  # 3 d: bg, kept
    (0, [0, 0, 9, 9], 0.2, 2.5),  # 4 e: bg, IoU 0.91 with c -> suppressed
    (0, [20, 20, 29, 29], 0.9, 1.0),  # 5 f: fg, kept
    (1, [0, 0, 9, 9], 0.9, 10.0),  # 6 g: fg on image 1: a's box does not suppress it
    (1, [30, 30, 39, 39], 0.05, 0.5),  # 7 h: bg, kept
]


def _hand_targets():
    ious = [[r[2] for r in HAND if r[0] == i] for i in (0, 1)]
    boxes = [[r[1] for r in HAND if r[0] == i] for i in (0, 1)]
    return targets_from(ious, boxes), GivenLosses([r[3] for r in HAND])


@pytest.mark.parametrize(
    ("mining", "b", "expected"),
    [
        ("per_image", 4, [0, 2, 6, 7]),  # top 2 survivors of each image
        ("per_batch", 4, [6, 0, 2, 3]),  # top 4 survivors of the minibatch
        ("per_batch", 100, [6, 0, 2, 3, 5, 7]),  # fewer survivors than B: keep all
    ],
)
def test_ohem_picks_top_b_after_per_label_nms(mining: str, b: int, expected: list[int]):
    targets, ranking = _hand_targets()
    cfg = SamplerConfig(name="ohem", rois_per_batch=b, bg_lo=0.0, mining=mining)
    out = build_sampler(cfg, ims_per_batch=2).select(targets, ranking)
    assert sorted(out.indices.tolist()) == sorted(expected)


def _greedy_nms_reference(boxes, scores, groups, thresh):
    keep = []
    for i in sorted(range(len(scores)), key=lambda j: -scores[j]):
        if all(
            groups[k] != groups[i] or box_iou(boxes[k : k + 1], boxes[i : i + 1]).item() <= thresh
            for k in keep
        ):
            keep.append(i)
    return keep


def test_ohem_matches_a_brute_force_reference_on_random_rois():
    gen = torch.Generator().manual_seed(3)
    n = 120
    xy = torch.randint(0, 30, (n, 2), generator=gen).float()
    wh = torch.randint(4, 20, (n, 2), generator=gen).float()
    boxes = torch.cat([xy, xy + wh], 1)
    ious = torch.rand(n, generator=gen)
    losses = torch.rand(n, generator=gen)
    half = n // 2
    targets = targets_from(
        [ious[:half].tolist(), ious[half:].tolist()], [boxes[:half].tolist(), boxes[half:].tolist()]
    )
    cfg = SamplerConfig(name="ohem", rois_per_batch=16, bg_lo=0.0, mining="per_image")
    out = build_sampler(cfg, 2).select(targets, GivenLosses(losses.tolist()))
    groups = (targets.image_index * 10 + targets.labels).tolist()
    keep = _greedy_nms_reference(boxes, losses.tolist(), groups, 0.7)
    expected = []
    for img in (0, 1):
        expected += [k for k in keep if targets.image_index[k] == img][:8]
    assert sorted(out.indices.tolist()) == sorted(expected)


def test_cls_only_ranking_ignores_the_box_loss():
    targets = targets_from([[0.9, 0.2]], [[[0, 0, 9, 9], [40, 40, 49, 49]]])
    ranking = GivenLosses([1.0, 2.0], [5.0, 0.0])
    pick = {}
    for loss in ("cls_bbox", "cls"):
        cfg = SamplerConfig(name="ohem", rois_per_batch=1, bg_lo=0.0, ranking_loss=loss)
        pick[loss] = build_sampler(cfg, 1).select(targets, ranking).indices.tolist()
    assert pick == {"cls_bbox": [0], "cls": [1]}


def test_balanced_ohem_keeps_fg_fraction_of_hardest():
    ious = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.15, 0.12, 0.11, 0.4, 0.45, 0.05]
    losses = [0.1, 0.9, 0.5, 0.7, 0.2, 0.8, 0.3, 0.6, 0.4, 1.0, 0.05, 9.0]
    targets = targets_from([ious])
    cfg = SamplerConfig(name="ohem_balanced", rois_per_batch=8, bg_lo=0.1, fg_fraction=0.25)
    out = build_sampler(cfg, 1).select(targets, GivenLosses(losses))
    # 2 hardest fg (1: 0.9, 3: 0.7); 6 hardest bg in [0.1, 0.5) -- RoI 11 (IoU 0.05) is excluded
    assert sorted(out.indices.tolist()) == sorted([1, 3, 9, 5, 7, 8, 6, 4])


def test_unknown_sampler_is_a_config_error_with_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'ohem'"):
        build_sampler(SamplerConfig(name="ohme"), 2)
    assert {"heuristic", "ohem", "all_rois", "ohem_balanced"} <= set(REGISTRY)


def _tiny_model_and_targets(dropout: float = 0.5):
    cfg = build_config({"model": {"backbone": "tiny", "fc_dim": 32, "dropout": dropout}})
    torch.manual_seed(0)
    model = build_model(cfg, 3).train()
    images = torch.randn(2, 3, 48, 48, requires_grad=True)
    gt = [torch.tensor([[4.0, 4.0, 30.0, 30.0]]), torch.tensor([[10.0, 8.0, 40.0, 44.0]])]
    rois = [torch.cat([g, torch.rand(40, 2).mul(20).repeat(1, 2) + torch.tensor([0, 0, 8, 8])])
            for g in gt]  # fmt: skip
    targets = match_minibatch(rois, gt, [torch.tensor([1]), torch.tensor([3])], 0.5)
    return model, images, targets


def test_read_only_pass_builds_no_graph_and_leaves_no_grad():
    model, images, targets = _tiny_model_and_targets()
    features = model.features(images).detach().requires_grad_(True)  # a leaf that wants grad
    norm = torch.zeros(len(targets), 4)
    lc, lb = RankingPass(model, features, targets, norm, dropout=True).losses()
    assert lc.shape == lb.shape == (len(targets),)
    for out in (lc, lb):
        assert not out.requires_grad and out.grad_fn is None
    with pytest.raises(RuntimeError):
        lc.sum().backward()  # nothing to differentiate: no graph was recorded
    assert features.grad is None and images.grad is None
    assert all(p.grad is None for p in model.parameters())
    assert model.roi_head.training  # the head's mode is restored


def test_ranking_dropout_switch():
    model, images, targets = _tiny_model_and_targets(dropout=0.5)
    features = model.features(images).detach()
    norm = torch.zeros(len(targets), 4)

    def run(dropout: bool) -> torch.Tensor:
        return RankingPass(model, features, targets, norm, dropout=dropout).losses()[0]

    assert not torch.equal(run(True), run(True))  # dropout active: two draws differ
    torch.testing.assert_close(run(False), run(False))
    model.eval()  # in eval mode the switch is moot: no dropout either way
    torch.testing.assert_close(run(True), run(False))
