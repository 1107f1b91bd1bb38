"""One minibatch through Fast R-CNN: trunk, GT matching, RoI sampling, head, losses.

`pool_strategy` decides how the selected RoIs get their trainable pooled features:
  repool  no-grad ranking pass over all RoIs (pooling included), then pool the selected again
          with grad. Extra work: pooling the selected RoIs twice (cheap; B << R).
  reuse   pool all RoIs once with grad, rank from a detached view, index the selected.
          Extra work: RoI-pooling backward over all RoIs, and all pooled features kept alive.
  naive   (benchmark baseline) full autograd forward of pool + head over all RoIs, loss masked
          to the selected RoIs; what OHEM costs without a read-only pass.
Samplers that do not rank by loss always pool only the RoIs they select.

Statistics stay 0-d device tensors (the trainer reads them once per log period); with a
`clock`, the ranking pass is timed as its own phase inside the forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from ohem_tune.data.records import Minibatch
from ohem_tune.errors import ConfigError
from ohem_tune.modeling.fast_rcnn import FastRCNN
from ohem_tune.modeling.losses import fast_rcnn_loss, per_roi_losses
from ohem_tune.modeling.matching import RoITargets, match_minibatch
from ohem_tune.samplers.base import RankingPass, RoISampler
from ohem_tune.samplers.ranking import ApproximatePass, agreement, build_ranking_pass
from ohem_tune.tracking_keys import ALL_LOSS, LOSS_PER_ROI_ALL, SELECTED_LOSS

PoolStrategy = Literal["repool", "reuse", "naive"]


class Clock(Protocol):
    """Phase boundaries (engine/phases.py: PhaseClock)."""

    def mark(self, phase: str) -> None: ...


def resolve_pool_strategy(name: str, device: torch.device) -> PoolStrategy:
    """'auto' -> the strategy measured fastest for the device (benchmarks/ohem_overhead.py)."""
    if name != "auto":
        return name  # type: ignore[return-value]
    # repool won on CPU (roi_align/roi_pool backward over all RoIs is slow there) and keeps
    # peak memory lowest on every device, since no grad-tracked pooled tensor of all RoIs exists.
    return "repool"


@dataclass
class StepOutput:
    """Losses of one minibatch (loss carries the graph) and what the sampler reported."""

    loss: torch.Tensor
    loss_cls: torch.Tensor  # detached
    loss_bbox: torch.Tensor  # detached
    indices: torch.Tensor
    targets: RoITargets
    stats: dict[str, float | torch.Tensor] = field(default_factory=dict)  # 0-d device tensors


class _Precomputed:
    """Per-RoI losses already at hand (the naive strategy's grad-tracked forward, detached)."""

    def __init__(self, losses: tuple[torch.Tensor, torch.Tensor]):
        self._losses = losses
        self.computed = True

    def losses(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._losses


def forward_minibatch(
    model: FastRCNN,
    batch: Minibatch,
    sampler: RoISampler,
    fg_thresh: float,
    pool_strategy: PoolStrategy = "repool",
    ranking_dropout: bool = True,
    score_all: bool = False,
    chunk_size: int | None = None,
    clock: Clock | None = None,
    iteration: int | None = None,
) -> StepOutput:
    """Forward one minibatch; `score_all` also computes the mean loss over all RoIs (metric).

    `clock` sees the ranking pass of samplers that rank by loss as phase "ranking" (the
    heuristic's metric-only pass on log iterations stays in "forward"). `iteration` (1-based)
    times the agreement check of an approximate ranking pass (sampler.agreement_period).
    """
    features = model.features(batch.images)
    targets = match_minibatch(batch.rois, batch.gt_boxes, batch.gt_labels, fg_thresh, batch.scales)
    fg = (targets.labels > 0)[:, None].to(targets.targets.dtype)
    norm_targets = model.normalize_targets(targets.targets, targets.labels) * fg

    ranks = sampler.ranks_by_loss
    all_logits = all_deltas = pooled_all = None
    if ranks and pool_strategy == "naive":
        all_logits, all_deltas = model.head(model.pool(features, targets.rois))
        with torch.no_grad():
            lc, lb = per_roi_losses(all_logits, all_deltas, targets.labels, norm_targets)
        ranking = _Precomputed((lc, lb))
    else:
        if ranks and pool_strategy == "reuse":
            pooled_all = model.pool(features, targets.rois)
        mark = clock.mark if clock is not None and ranks else None
        if ranks and pooled_all is None:  # sampler.ranking: exact or an approximation
            ranking = build_ranking_pass(
                sampler.cfg, model, features, targets, norm_targets, ranking_dropout,
                chunk_size, mark,
            )  # fmt: skip
        else:
            ranking = RankingPass(
                model, features, targets, norm_targets, ranking_dropout, pooled_all, chunk_size,
                mark,
            )  # fmt: skip
    if not ranks and sampler.cfg.ranking != "exact":
        raise ConfigError(
            f"sampler.ranking: '{sampler.cfg.ranking}' needs a sampler that ranks by loss "
            f"(e.g. ohem); sampler.name is '{sampler.cfg.name}'"
        )

    chosen = sampler.select(targets, ranking)
    idx = chosen.indices
    labels, tgt = targets.labels[idx], norm_targets[idx]
    if all_logits is not None:
        cls_logits, deltas = all_logits[idx], all_deltas[idx]
    elif pooled_all is not None:
        cls_logits, deltas = model.head(pooled_all[idx])
    else:
        cls_logits, deltas = model.head(model.pool(features, targets.rois[idx]))
    loss_cls, loss_bbox, per_roi = fast_rcnn_loss(cls_logits, deltas, labels, tgt)

    stats = dict(chosen.stats)
    stats[SELECTED_LOSS] = per_roi.mean() if per_roi.numel() else 0.0
    period = sampler.cfg.agreement_period
    due = period and (iteration is None or iteration % period == 0)  # None: every call
    if isinstance(ranking, ApproximatePass) and due:
        stats.update(agreement(sampler, ranking, idx))
    if score_all or getattr(ranking, "computed", False):
        lc, lb = _metric_losses(ranking, features.device)
        total = lc + lb
        rank_loss = lc if sampler.cfg.ranking_loss == "cls" else total
        stats[LOSS_PER_ROI_ALL] = total.mean() if total.numel() else 0.0
        stats[ALL_LOSS] = rank_loss.mean() if total.numel() else 0.0
    return StepOutput(
        loss_cls + loss_bbox, loss_cls.detach(), loss_bbox.detach(), idx, targets, stats
    )


def _metric_losses(
    ranking: RankingPass | _Precomputed, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ranking pass's per-RoI losses; a pass that runs only for the metric (the heuristic's,
    on log iterations) draws its dropout masks from a forked RNG, so logging never changes
    what training draws next."""
    if getattr(ranking, "computed", True):
        return ranking.losses()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return ranking.losses()
