"""Fast R-CNN model: trunks, RoI pooling + head, box coding, GT matching, losses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ohem_tune.modeling.backbones import TRUNK_NAMES, build_trunk
from ohem_tune.modeling.fast_rcnn import FastRCNN
from ohem_tune.modeling.roi_head import FastRCNNHead, RoIPooler
from ohem_tune.modeling.weights import load_pretrained

if TYPE_CHECKING:
    from ohem_tune.config import Config


def build_model(cfg: Config, num_classes: int) -> FastRCNN:
    """Build FastRCNN from cfg.model for K = num_classes object classes (background excluded)."""
    m = cfg.model
    trunk = build_trunk(m.backbone, m.freeze_at)
    pooler = RoIPooler(m.roi_op, m.pooled_size, 1.0 / trunk.stride)
    fc7_dim = m.fc7_dim or m.fc_dim
    head = FastRCNNHead(
        trunk.out_channels * m.pooled_size**2, num_classes, m.fc_dim, fc7_dim, m.dropout
    )
    model = FastRCNN(trunk.body, pooler, head, num_classes, trunk.stride, m.bbox_reg_stds)
    if m.weights is not None:
        load_pretrained(model, m.weights, m.backbone, m.weights_format or "ours")
    return model


__all__ = ["TRUNK_NAMES", "FastRCNN", "FastRCNNHead", "RoIPooler", "build_model", "build_trunk"]
