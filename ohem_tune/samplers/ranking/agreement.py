"""How faithful an approximate ranking pass was: its selection against the exact pass's.

The exact pass runs on the same minibatch from the RNG state the approximate pass started
from, so both draw the same dropout masks; the global RNG stream is left as it was, so turning
the check on does not change training. Costs one exact pass per check.
"""

from __future__ import annotations

import torch

from ohem_tune.samplers.base import RankingPass, RoISampler
from ohem_tune.samplers.ranking.common import ApproximatePass, restore_rng
from ohem_tune.tracking_keys import RANKING_JACCARD, RANKING_LOSS_RATIO


def agreement(
    sampler: RoISampler, approx: ApproximatePass, chosen: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Jaccard overlap of `chosen` (selected from `approx`) with the exact pass's selection, and
    the ratio of their mean exact ranking losses (<= ~1: the approximation picked easier RoIs).
    0-d device tensors."""
    device = approx.features.device
    exact = RankingPass(
        approx.model, approx.features, approx.targets, approx.norm_targets,
        dropout=approx.dropout, chunk_size=approx.chunk_size,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if approx.rng_state is not None:
            restore_rng(approx.rng_state, device)
        reference = sampler.select(approx.targets, exact).indices
    lc, lb = exact.losses()
    loss = lc if sampler.cfg.ranking_loss == "cls" else lc + lb
    return {
        RANKING_JACCARD: jaccard(chosen, reference, loss.shape[0]),
        RANKING_LOSS_RATIO: loss[chosen].mean() / loss[reference].mean().clamp(min=1e-12),
    }


def jaccard(a: torch.Tensor, b: torch.Tensor, size: int) -> torch.Tensor:
    """|A & B| / |A | B| of two index sets into range(size) (1 when both are empty)."""
    in_a = torch.zeros(size, dtype=torch.bool, device=a.device)
    in_b = torch.zeros_like(in_a)
    in_a[a] = True
    in_b[b] = True
    union = (in_a | in_b).sum()
    inter = (in_a & in_b).sum()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones((), device=a.device))
