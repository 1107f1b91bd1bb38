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

    ranking: Literal["exact", "fast", "lowrank", "channels"] = Field(
        "exact",
        description="the read-only ranking pass of samplers that rank by loss: 'exact' (the "
        "reference), 'fast' (the same maths with faster CPU kernels, optionally bf16), 'lowrank' "
        "(fc6 on a rank-r basis of the minibatch's pooled features), 'channels' (roi_align "
        "only: pool the top-r principal channels of the feature map); docs/training.md",
    )
    ranking_rank: int | None = Field(
        None,
        ge=1,
        description="lowrank: basis size (default 128); channels: channels kept (default 48)",
    )
    ranking_sampling_ratio: int | None = Field(
        None,
        ge=1,
        description="roi_align bilinear samples per bin side in an approximate ranking pass "
        "(None: the model's, 2); 1 samples 4x fewer points",
    )
    ranking_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="matmul precision of an approximate ranking pass (not 'exact')"
    )
    agreement_period: int = Field(
        0,
        ge=0,
        description="every K iterations also run the exact pass and log the selection's Jaccard "
        "overlap and loss ratio (train/ranking_*); 0 = off",
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
        if self.ranking == "exact" and self.ranking_dtype != "float32":
            raise FieldError(
                "ranking_dtype",
                self.ranking_dtype,
                "the exact pass is the float32 reference; set sampler.ranking: fast for the "
                "same maths in bfloat16",
            )
        if self.ranking_rank is not None and self.ranking not in ("lowrank", "channels"):
            raise FieldError(
                "ranking_rank",
                self.ranking_rank,
                f"only ranking: lowrank or channels reads it (sampler.ranking is "
                f"'{self.ranking}'); remove it or choose one of those",
            )
        if self.ranking_sampling_ratio is not None and self.ranking == "exact":
            raise FieldError(
                "ranking_sampling_ratio",
                self.ranking_sampling_ratio,
                "the exact pass pools as the model does; set sampler.ranking to fast, lowrank or "
                "channels, or remove it",
            )
        if self.agreement_period and self.ranking == "exact":
            raise FieldError(
                "agreement_period",
                self.agreement_period,
                "the agreement check compares an approximate ranking pass with the exact one; "
                "sampler.ranking is 'exact' (set it to fast, lowrank or channels, or the "
                "period to 0)",
            )
        if self.ranking != "exact" and self.pool_strategy == "reuse":
            raise FieldError(
                "ranking",
                self.ranking,
                "an approximate ranking pass pools on its own; use sampler.pool_strategy: "
                "repool (or auto) with it",
            )
        return self
