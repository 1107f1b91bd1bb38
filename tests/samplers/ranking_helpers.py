"""A tiny Fast R-CNN and one minibatch of RoIs for the ranking-pass tests (no data loading)."""

from __future__ import annotations

import torch

from ohem_tune.config import SamplerConfig, build_config
from ohem_tune.modeling import build_model
from ohem_tune.modeling.fast_rcnn import FastRCNN
from ohem_tune.modeling.matching import RoITargets, match_minibatch


def tiny_minibatch(
    roi_op: str = "roi_align", rois_per_image: int = 150, dropout: float = 0.5
) -> tuple[FastRCNN, torch.Tensor, RoITargets, torch.Tensor]:
    """(model in train mode, features (2, 16, 12, 12), targets, normalised box targets)."""
    cfg = build_config(
        {"model": {"backbone": "tiny", "fc_dim": 32, "dropout": dropout, "roi_op": roi_op}}
    )
    torch.manual_seed(0)
    model = build_model(cfg, 3).train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        features = model.features(torch.randn(2, 3, 96, 96, generator=gen))
    gt = [torch.tensor([[4.0, 4.0, 40.0, 50.0]]), torch.tensor([[30.0, 20.0, 80.0, 70.0]])]
    rois = []
    for g in gt:
        near = g + torch.randn(rois_per_image // 2, 4, generator=gen) * 6.0
        xy = torch.rand(rois_per_image - near.shape[0], 2, generator=gen) * 80.0
        anywhere = torch.cat([xy, xy + 4.0 + torch.rand(xy.shape, generator=gen) * 40.0], 1)
        boxes = torch.cat([g, near, anywhere]).clamp(0.0, 95.0)
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1.0)
        rois.append(boxes)
    targets = match_minibatch(rois, gt, [torch.tensor([1]), torch.tensor([3])], 0.5)
    fg = (targets.labels > 0)[:, None].float()
    norm = model.normalize_targets(targets.targets, targets.labels) * fg
    return model, features, targets, norm


def ohem_config(**ranking: object) -> SamplerConfig:
    """OHEM as the paper runs it (bg_lo 0), B = 32 over 2 images, with the given ranking keys."""
    return SamplerConfig(name="ohem", rois_per_batch=32, bg_lo=0.0, **ranking)
