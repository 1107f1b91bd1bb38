"""Model section: trunk, RoI pooling, RoI head."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ohem_tune.config.base import Section

Backbone = Literal["vgg16", "vgg_cnn_m_1024", "resnet50", "small_vgg16", "small_vggm", "tiny"]


class ModelConfig(Section):
    """Fast R-CNN: a conv trunk, RoI pooling, fc6/fc7, classifier and class-specific regressor."""

    backbone: Backbone = "small_vggm"
    weights: Path | None = Field(None, description="local file with pretrained trunk weights")
    freeze_at: int | None = Field(
        None, ge=0, description="freeze conv blocks up to this index (None: trunk default)"
    )
    roi_op: Literal["roi_pool", "roi_align"] = "roi_pool"
    pooled_size: int = Field(7, ge=1, le=14)
    fc_dim: int = Field(4096, ge=16, description="fc6 width (and fc7's unless fc7_dim is set)")
    fc7_dim: int | None = Field(None, ge=16, description="fc7 width (VGG_CNN_M_1024: 1024)")
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    bbox_reg_stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    normalize_targets: bool = True
