"""Sampler section: which RoIs of a minibatch get gradient (heuristic, OHEM, all RoIs, ...)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ohem_tune.config.base import Section
from ohem_tune.config.errors import FieldError


class SamplerConfig(Section):
    """RoI sampler choice and its knobs; `name` is a key of the sampler registry."""

    name: str = "heuristic"
    rois_per_batch: int = Field(128, ge=1, description="B: RoIs per SGD minibatch (all images)")
    fg_fraction: float = Field(0.25, gt=0.0, le=1.0)
    fg_thresh: float = Field(0.5, gt=0.0, le=1.0)
    bg_hi: float = Field(0.5, gt=0.0, le=1.0)
    bg_lo: float = Field(0.1, ge=0.0, lt=1.0)
    nms_thresh: float = Field(0.7, gt=0.0, le=1.0, description="OHEM de-duplication NMS IoU")
    max_rois_per_image: int | None = Field(
        None,
        ge=1,
        description="all_rois only: at most this many RoIs per image (fg first, then random bg); "
        "None = every RoI, as the authors' _all_rois",
    )
    mining: Literal["per_image", "per_batch"] = "per_image"
    ranking_dropout: bool = Field(True, description="keep dropout in train mode when ranking")
    ranking_loss: Literal["cls_bbox", "cls"] = "cls_bbox"
    pool_strategy: Literal["auto", "repool", "reuse"] = Field(
        "auto",
        description="trainable pooling of the selected RoIs: 'repool' pools them again with grad "
        "after the no-grad ranking pass; 'reuse' pools all RoIs once with grad and indexes the "
        "selected; 'auto' picks per device (see docs/training.md)",
    )

    @model_validator(mode="after")
    def _ranges(self) -> SamplerConfig:
        if self.bg_lo >= self.bg_hi:
            raise FieldError("bg_lo", self.bg_lo, f"must be below sampler.bg_hi ({self.bg_hi})")
        if self.max_rois_per_image is not None and self.name != "all_rois":
            raise FieldError(
                "max_rois_per_image",
                self.max_rois_per_image,
                f"only the all_rois sampler reads it (sampler.name is '{self.name}'); "
                "remove it or set sampler.name: all_rois",
            )
        return self
