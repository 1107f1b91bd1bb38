"""The read-only ranking pass chosen by `sampler.ranking`: the exact one or an approximation.

Each approximation is one file behind the RankingPass contract (`losses() -> (loss_cls (R,),
loss_bbox (R,))`, no autograd state); only the no-grad ranking changes, the trainable forward
and backward over the selected RoIs stay exact. docs/training.md ("Approximate ranking")
gives the cost model and the measured agreement.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ohem_tune.config.sampler import SamplerConfig
from ohem_tune.modeling.matching import RoITargets
from ohem_tune.samplers.base import RankingPass
from ohem_tune.samplers.ranking.agreement import agreement, jaccard
from ohem_tune.samplers.ranking.channels import ChannelsPass
from ohem_tune.samplers.ranking.common import ApproximatePass
from ohem_tune.samplers.ranking.fast import FastPass
from ohem_tune.samplers.ranking.lowrank import LowRankPass

PASSES: dict[str, type[ApproximatePass]] = {
    "fast": FastPass,
    "lowrank": LowRankPass,
    "channels": ChannelsPass,
}


def build_ranking_pass(
    cfg: SamplerConfig,
    model: torch.nn.Module,
    features: torch.Tensor,
    targets: RoITargets,
    norm_targets: torch.Tensor,
    dropout: bool = True,
    chunk_size: int | None = None,
    mark: Callable[[str], None] | None = None,
) -> RankingPass:
    """The ranking pass `cfg.ranking` names over one minibatch (nothing runs until losses())."""
    if cfg.ranking == "exact":
        return RankingPass(
            model, features, targets, norm_targets, dropout=dropout, chunk_size=chunk_size,
            mark=mark,
        )  # fmt: skip
    return PASSES[cfg.ranking](
        cfg, model, features, targets, norm_targets, dropout=dropout, chunk_size=chunk_size,
        mark=mark,
    )  # fmt: skip


__all__ = ["PASSES", "ApproximatePass", "agreement", "build_ranking_pass", "jaccard"]
