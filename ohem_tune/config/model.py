"""Model section: trunk, RoI pooling, RoI head."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ohem_tune.config.base import Section

Backbone = Literal["vgg16", "vgg_cnn_m_1024", "resnet50", "small_vgg16", "small_vggm", "tiny"]
WeightsFormat = Literal["torchvision", "caffe", "ours"]

# Where each trunk's released ImageNet weights come from (used when model.weights is set and
# model.weights_format is not): torchvision's VGG16 / ResNet-50, the Caffe-converted
# VGG_CNN_M_1024 (it has no torchvision release). The small trunks train from scratch.
DEFAULT_WEIGHTS_FORMAT: dict[str, str] = {
    "vgg16": "torchvision",
    "resnet50": "torchvision",
    "vgg_cnn_m_1024": "caffe",
    "small_vgg16": "ours",
    "small_vggm": "ours",
    "tiny": "ours",
}
# RoI pooling grid per trunk: VGG_CNN_M_1024's prototxt pools 6x6 (fc6 = 4096 x 512*6*6).
DEFAULT_POOLED_SIZE: dict[str, int] = {"vgg_cnn_m_1024": 6}


class ModelConfig(Section):
    """Fast R-CNN: a conv trunk, RoI pooling, fc6/fc7, classifier and class-specific regressor."""

    backbone: Backbone = "small_vggm"
    weights: Path | None = Field(None, description="local file with pretrained trunk weights")
    weights_format: WeightsFormat | None = Field(
        None, description="where the weights come from; sets the input convention (input.*). "
        "None: 'ours' without model.weights, else the trunk's release (torchvision for vgg16 "
        "and resnet50, caffe for vgg_cnn_m_1024); resolved when the config is validated",
    )  # fmt: skip
    freeze_at: int | None = Field(
        None, ge=0, description="freeze conv blocks up to this index (None: trunk default)"
    )
    roi_op: Literal["roi_pool", "roi_align"] = "roi_pool"
    pooled_size: int | None = Field(
        None, ge=1, le=14, description="RoI pooling grid; None: 6 for vgg_cnn_m_1024 (its "
        "prototxt), else 7; resolved when the config is validated",
    )  # fmt: skip
    fc_dim: int = Field(4096, ge=16, description="fc6 width (and fc7's unless fc7_dim is set)")
    fc7_dim: int | None = Field(None, ge=16, description="fc7 width (VGG_CNN_M_1024: 1024)")
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    bbox_reg_stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    normalize_targets: bool = True

    @model_validator(mode="before")
    @classmethod
    def _resolve_defaults(cls, data: Any) -> Any:
        """Fill weights_format and pooled_size from the trunk, so the stored config (and every
        checkpoint) names the values it ran with; explicit values win."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        backbone = data.get("backbone", "small_vggm")
        if data.get("weights_format") is None:
            data["weights_format"] = (
                "ours" if data.get("weights") is None
                else DEFAULT_WEIGHTS_FORMAT.get(str(backbone), "ours")
            )  # fmt: skip
        if data.get("pooled_size") is None:
            data["pooled_size"] = DEFAULT_POOLED_SIZE.get(str(backbone), 7)
        return data
