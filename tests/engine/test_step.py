"""OHEM's trainable step: its gradient is the gradient of the loss on the selected RoIs."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.config import SamplerConfig, build_config
from ohem_tune.data.records import Minibatch
from ohem_tune.engine.step import forward_minibatch
from ohem_tune.modeling import build_model
from ohem_tune.modeling.losses import fast_rcnn_loss
from ohem_tune.samplers import build_sampler


def _minibatch() -> Minibatch:
    gen = torch.Generator().manual_seed(1)
    gt = [
        torch.tensor([[4.0, 4.0, 30.0, 30.0], [30, 20, 60, 50]]),
        torch.tensor([[8.0, 6, 50, 40]]),
    ]
    rois = []
    for g in gt:
        xy = torch.randint(0, 40, (60, 2), generator=gen).float()
        wh = torch.randint(6, 30, (60, 2), generator=gen).float()
        rois.append(torch.cat([g, torch.cat([xy, xy + wh], 1)]))
    return Minibatch(
        images=torch.randn(2, 3, 64, 72, generator=gen),
        image_sizes=[(64, 72), (64, 72)],
        scales=[1.0, 1.0],
        rois=rois,
        gt_boxes=gt,
        gt_labels=[torch.tensor([1, 2]), torch.tensor([3])],
        record_indices=[0, 1],
    )


def _model(roi_op: str, dropout: float = 0.0):
    cfg = build_config(
        {"model": {"backbone": "tiny", "fc_dim": 32, "dropout": dropout, "roi_op": roi_op}}
    )
    torch.manual_seed(0)
    model = build_model(cfg, 3).train()
    model.set_target_stats(
        torch.tensor([0.01, -0.02, 0.05, 0.0]), torch.tensor([0.1, 0.1, 0.2, 0.2])
    )
    return model


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("roi_op", ["roi_pool", "roi_align"])
def test_ohem_gradient_equals_loss_on_selected_rois(roi_op: str):
    model = _model(roi_op)
    batch = _minibatch()
    sampler = build_sampler(SamplerConfig(name="ohem", rois_per_batch=16, bg_lo=0.0), 2)

    results = {}
    for strategy in ("repool", "reuse", "naive"):
        model.zero_grad()
        out = forward_minibatch(model, batch, sampler, 0.5, strategy)
        out.loss.backward()
        results[strategy] = (out.indices.clone(), out.loss.item(), _grads(model))
    idx, loss, grads = results["repool"]
    assert 0 < len(idx) <= 16

    # the same loss written out directly on the selected RoIs
    model.zero_grad()
    features = model.features(batch.images)
    targets = out.targets
    labels = targets.labels[idx]
    norm = model.normalize_targets(targets.targets[idx], labels) * (labels > 0)[:, None]
    logits, deltas = model.head(model.pool(features, targets.rois[idx]))
    loss_cls, loss_bbox, _ = fast_rcnn_loss(logits, deltas, labels, norm)
    (loss_cls + loss_bbox).backward()
    direct = _grads(model)

    assert loss == pytest.approx((loss_cls + loss_bbox).item(), rel=1e-6)
    for got, want in zip(grads, direct, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    for strategy in ("reuse", "naive"):
        other_idx, other_loss, other_grads = results[strategy]
        assert torch.equal(other_idx, idx)
        assert other_loss == pytest.approx(loss, rel=1e-6)
        for got, want in zip(other_grads, direct, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_score_all_reports_mean_loss_over_all_rois_for_the_heuristic():
    model = _model("roi_align")
    batch = _minibatch()
    sampler = build_sampler(SamplerConfig(name="heuristic", rois_per_batch=16), 2)
    quiet = forward_minibatch(model, batch, sampler, 0.5, score_all=False)
    assert "train/loss_per_roi_all" not in quiet.stats
    scored = forward_minibatch(model, batch, sampler, 0.5, score_all=True)
    assert scored.stats["train/loss_per_roi_all"] > 0
    assert scored.stats["train/num_selected"] <= 16


def test_the_metric_only_pass_leaves_the_rng_stream_to_training():
    """The heuristic's read-only pass on log iterations draws dropout masks from a forked RNG:
    what training draws next does not depend on train.log_period."""
    model = _model("roi_align", dropout=0.5)
    batch = _minibatch()
    sampler = build_sampler(SamplerConfig(name="heuristic", rois_per_batch=16), 2)
    states = []
    for score_all in (False, True):
        torch.manual_seed(5)
        forward_minibatch(model, batch, sampler, 0.5, score_all=score_all)
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1])


def test_ranking_pass_under_bf16_autocast_leaves_the_head_gradients_intact():
    """OHEM's read-only pass inside autocast (shared weights, no_grad) must neither record a
    graph nor disturb the trainable head's gradients: they equal those of a run whose ranking
    pass ran in fp32 outside autocast, with the same selected RoIs."""
    from ohem_tune.samplers import RankingPass

    model = _model("roi_align")
    batch = _minibatch()
    sampler = build_sampler(SamplerConfig(name="ohem", rois_per_batch=16, bg_lo=0.0), 2)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)

    model.zero_grad()
    with bf16:
        out = forward_minibatch(model, batch, sampler, 0.5, "repool")
    out.loss.backward()
    idx, in_autocast = out.indices.clone(), _grads(model)
    assert out.loss.dtype == torch.float32  # losses in fp32 under autocast
    assert 0 < len(idx) <= 16

    # the ranking pass alone inside autocast: no graph, no gradient anywhere
    model.zero_grad(set_to_none=True)
    targets = out.targets
    norm = model.normalize_targets(targets.targets, targets.labels) * (targets.labels > 0)[:, None]
    with bf16:
        features = model.features(batch.images)
        lc, lb = RankingPass(model, features, targets, norm, dropout=False).losses()
    assert lc.dtype == lb.dtype == torch.float32
    assert lc.grad_fn is None and lb.grad_fn is None and not lc.requires_grad
    assert all(p.grad is None for p in model.parameters())

    # reference: ranking in fp32 outside autocast, then the same RoIs' trainable step in bf16
    RankingPass(model, features.detach().float(), targets, norm, dropout=False).losses()
    model.zero_grad()
    with bf16:
        features = model.features(batch.images)
        labels = targets.labels[idx]
        logits, deltas = model.head(model.pool(features, targets.rois[idx]))
        loss_cls, loss_bbox, _ = fast_rcnn_loss(logits, deltas, labels, norm[idx])
    (loss_cls + loss_bbox).backward()
    reference = _grads(model)
    head = {id(p) for p in model.roi_head.parameters()}
    trained = [p for p in model.parameters() if p.requires_grad]
    for p, got, want in zip(trained, in_autocast, reference, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        if id(p) in head:
            assert got.abs().sum() > 0  # the head did get a gradient


def test_a_minibatch_with_no_roi_to_train_on_gives_zero_loss_not_a_crash():
    # an image whose objects are all difficult, alone in its minibatch (N = 1) under bg_lo 0.1:
    # its RoIs all have IoU 0, so the heuristic selects none (fast-rcnn drops such images
    # beforehand; this is the step's own guard)
    model = _model("roi_align")
    batch = _minibatch()
    one = Minibatch(batch.images[:1], batch.image_sizes[:1], [1.0], [batch.rois[0][2:]],
                    [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)], [0])  # fmt: skip
    sampler = build_sampler(SamplerConfig(name="heuristic", bg_lo=0.1), 1)
    out = forward_minibatch(model, one, sampler, 0.5)
    assert out.loss.item() == 0.0
    out.loss.backward()  # a graph with no RoI in it still backpropagates (zero gradients)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(float(g.abs().sum()) == 0.0 for g in grads)
