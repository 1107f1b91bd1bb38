"""The RoI-sampler interface, its registry, and the read-only ranking pass shared by samplers.

A sampler picks which RoIs of a minibatch get gradient. Samplers that rank RoIs by loss
(OHEM and its variants) read per-RoI losses from a `RankingPass`, which runs the RoI head over
all RoIs once, under `torch.no_grad()`, in chunks (so its memory stays small and no autograd
graph is kept). Adding a sampler = one new file with a `@register("name")` class.

Samplers avoid host synchronisations where the result does not need one: statistics stay 0-d
device tensors, and per-image candidate lists come from one `nonzero` and one count read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from ohem_tune.config.errors import suggest
from ohem_tune.config.sampler import SamplerConfig
from ohem_tune.errors import ConfigError
from ohem_tune.modeling.losses import per_roi_losses
from ohem_tune.modeling.matching import RoITargets
from ohem_tune.tracking_keys import FG_FRACTION, NUM_SELECTED

# The ranking pass runs in chunks of ~CHUNK_BYTES of pooled features (e.g. 190 RoIs x 224 x 7 x 7
# fp32), so its transient memory stays near the heuristic's. Paper-scale heads (fc6 weights over
# LARGE_FC6_BYTES, e.g. 25088 x 4096) get at least LARGE_FC6_MIN_ROIS per chunk: each chunk
# re-reads fc6's weights, and 81-RoI chunks measured 35-40% slower than 250+ on CPU.
# On CUDA all RoIs go in one chunk: each chunk is a round of small kernel launches, and the
# transient pooled features (paper scale: 4000 x 512 x 7 x 7 fp32, ~0.4 GB) are affordable there.
CHUNK_BYTES = 8 * 2**20
LARGE_FC6_BYTES = 64 * 2**20
LARGE_FC6_MIN_ROIS = 256


class RoILosses(Protocol):
    """Per-RoI losses over all RoIs of the minibatch: (loss_cls (R,), loss_bbox (R,))."""

    def losses(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class RankingPass:
    """The read-only RoI-head pass over all RoIs, computed at most once per minibatch.

    Shares weights with the trained head and records no autograd graph. Dropout stays in train
    mode when `dropout` is True (the authors' code), its masks drawn by the head's
    `readonly_dropout` (same distribution as nn.Dropout, cheaper); otherwise the head runs in
    eval mode.
    `pooled` may be given when the caller already pooled all RoIs (it is detached here).
    `mark(phase)`, when given, is called as the pass starts ("forward" ends) and ends ("ranking").
    """

    def __init__(
        self,
        model: torch.nn.Module,
        features: torch.Tensor,
        targets: RoITargets,
        norm_targets: torch.Tensor,
        dropout: bool = True,
        pooled: torch.Tensor | None = None,
        chunk_size: int | None = None,
        mark: Callable[[str], None] | None = None,
    ):
        self.model = model
        self.features = features
        self.targets = targets
        self.norm_targets = norm_targets
        self.dropout = dropout
        self.pooled = pooled
        self.chunk_size = chunk_size
        self.mark = mark
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def computed(self) -> bool:
        """Whether the pass already ran for this minibatch."""
        return self._cache is not None

    @torch.no_grad()
    def losses(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-RoI (cls, bbox) losses of all R RoIs, without autograd state."""
        if self._cache is None:
            if self.mark is not None:
                self.mark("forward")
            head = self.model.roi_head
            was_training = head.training
            head.train(self.dropout and was_training)
            try:
                self._cache = self._run()
            finally:
                head.train(was_training)
            if self.mark is not None:
                self.mark("ranking")
        return self._cache

    def auto_chunk_size(self, features: torch.Tensor) -> int:
        """RoIs per ranking chunk: all of them on CUDA, ~CHUNK_BYTES of pooled features on CPU."""
        if features.is_cuda:
            return max(1, self.targets.rois.shape[0])
        size = self.model.pooler.output_size
        per_roi = features.shape[1] * size * size * features.element_size()
        rows = max(64, CHUNK_BYTES // per_roi)
        fc6 = self.model.roi_head.fc6.weight
        if fc6.numel() * fc6.element_size() > LARGE_FC6_BYTES:
            rows = max(rows, LARGE_FC6_MIN_ROIS)
        return rows

    def _run(self) -> tuple[torch.Tensor, torch.Tensor]:
        rois, labels, tgt = self.targets.rois, self.targets.labels, self.norm_targets
        features = self.features.detach()
        chunk = self.chunk_size or self.auto_chunk_size(features)
        out_cls, out_box = [], []
        for start in range(0, rois.shape[0], chunk):
            sl = slice(start, start + chunk)
            if self.pooled is not None:
                pooled = self.pooled[sl].detach()
            else:
                pooled = self.model.pool(features, rois[sl])
            cls_logits, deltas = self.model.head(pooled, readonly=True)
            lc, lb = per_roi_losses(cls_logits, deltas, labels[sl], tgt[sl])
            out_cls.append(lc)
            out_box.append(lb)
        if not out_cls:
            empty = rois.new_zeros(0)
            return empty, empty
        return torch.cat(out_cls), torch.cat(out_box)


@dataclass
class SampleResult:
    """The RoIs chosen for the trainable forward/backward and what the sampler saw."""

    indices: torch.Tensor  # (S,) int64 indices into the minibatch's RoITargets
    stats: dict[str, float | torch.Tensor] = field(default_factory=dict)  # tensors: 0-d, device


class RoISampler:
    """Base class: `select(targets, ranking)` -> SampleResult. Subclasses register by name."""

    name: str = ""
    ranks_by_loss: bool = False  # True: select() reads ranking.losses() every iteration

    def __init__(self, cfg: SamplerConfig, ims_per_batch: int):
        self.cfg = cfg
        self.ims_per_batch = ims_per_batch
        self.rois_per_batch = cfg.rois_per_batch
        self.rois_per_image = cfg.rois_per_batch // ims_per_batch

    def select(self, targets: RoITargets, ranking: RoILosses) -> SampleResult:
        """Indices of the RoIs that get gradient this iteration."""
        raise NotImplementedError

    # helpers shared by samplers
    def fg_bg_masks(self, targets: RoITargets) -> tuple[torch.Tensor, torch.Tensor]:
        """Foreground (IoU >= fg_thresh) and background (bg_lo <= IoU < bg_hi) candidates."""
        iou = targets.max_iou
        fg = iou >= self.cfg.fg_thresh
        bg = (iou < self.cfg.bg_hi) & (iou >= self.cfg.bg_lo) & ~fg
        return fg, bg

    def per_image_candidates(
        self, targets: RoITargets, fg_mask: torch.Tensor, bg_mask: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, (fg indices, bg indices) in increasing order, as
        `nonzero(mask & image_index == i)` gives them, with two host syncs for all images
        instead of two per image (RoIs are grouped by image, images in order)."""
        cand = torch.nonzero(fg_mask | bg_mask).flatten()
        n = targets.num_images
        key = targets.image_index[cand] * 2 + (~fg_mask[cand]).long()  # (image, fg first)
        ordered = cand[torch.argsort(key, stable=True)]
        counts = torch.bincount(key, minlength=2 * n).tolist()
        parts = ordered.split(counts)
        return [(parts[2 * i], parts[2 * i + 1]) for i in range(n)]

    def result(
        self, targets: RoITargets, indices: torch.Tensor, **extra: float | torch.Tensor
    ) -> SampleResult:
        """SampleResult with the common stats (fg fraction, number selected), no host sync."""
        n = indices.numel()
        # float64 division of exact counts: the same value as the host's fg / n
        fg = (targets.labels[indices] > 0).sum().double() / n if n else 0.0
        stats = {FG_FRACTION: fg, NUM_SELECTED: float(n), **extra}
        return SampleResult(indices=indices, stats=stats)


def random_subset(indices: torch.Tensor, k: int) -> torch.Tensor:
    """k of `indices` without replacement (all of them if fewer), drawn from torch's CPU RNG."""
    if indices.numel() <= k:
        return indices
    perm = torch.randperm(indices.numel())[:k]
    if indices.is_cuda:  # from pinned memory the copy is asynchronous: no host sync
        perm = perm.pin_memory().to(indices.device, non_blocking=True)
    return indices[perm]


def top_k(indices: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """The k of `indices` with the highest scores[indices] (all if fewer), highest first."""
    if indices.numel() == 0 or k <= 0:
        return indices[:0]
    order = torch.argsort(scores[indices], descending=True, stable=True)
    return indices[order[:k]]


REGISTRY: dict[str, type[RoISampler]] = {}


def register(name: str) -> Callable[[type[RoISampler]], type[RoISampler]]:
    """Class decorator: make a sampler available as `sampler.name: <name>`."""

    def wrap(cls: type[RoISampler]) -> type[RoISampler]:
        if name in REGISTRY:
            raise ValueError(f"sampler '{name}' registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


def build_sampler(cfg: SamplerConfig, ims_per_batch: int) -> RoISampler:
    """The sampler named by cfg.name (a one-line ConfigError with a suggestion otherwise)."""
    import ohem_tune.samplers  # noqa: F401  (registers the built-in samplers)

    if cfg.name not in REGISTRY:
        raise ConfigError(
            f"sampler.name: unknown sampler '{cfg.name}'{suggest(cfg.name, REGISTRY)}; "
            f"choose from {', '.join(sorted(REGISTRY))}"
        )
    return REGISTRY[cfg.name](cfg, ims_per_batch)
