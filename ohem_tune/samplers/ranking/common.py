"""What the approximate ranking passes share: the RankingPass contract, the head's tail, RNG.

An approximate pass replaces how fc6's pre-activation is computed (and may pool differently);
fc7, the classifier, the regressor and the per-RoI losses follow as in the exact head. It runs
the same chunks as the exact pass and applies the head's read-only dropout to fp32
activations of the same shapes, so from the same RNG state both passes draw the same dropout
masks: the agreement check (agreement.py) replays the exact pass from `rng_state`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ohem_tune.config.sampler import SamplerConfig
from ohem_tune.errors import ConfigError
from ohem_tune.modeling.losses import per_roi_losses
from ohem_tune.modeling.matching import RoITargets
from ohem_tune.modeling.roi_head import RoIPooler
from ohem_tune.samplers.base import RankingPass
from ohem_tune.samplers.ranking.roi_pool_table import RoIPoolTable

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
RNGState = tuple[torch.Tensor, torch.Tensor | None]


def capture_rng(device: torch.device) -> RNGState:
    """The global CPU generator's state, and the device's when it is CUDA (dropout draws there)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def restore_rng(state: RNGState, device: torch.device) -> None:
    """Put back a state from capture_rng."""
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class Pooler:
    """index -> (n, D) flattened pooled features of rois[index]; D in (P, P, C) order when
    `channels_last`, else (C, P, P), the order fc6's weight columns follow. The sparse-table
    pooler writes into buffers it reuses: its result is valid until its next call."""

    def __init__(
        self,
        pool: Callable[[slice | torch.Tensor], torch.Tensor],
        channels_last: bool,
        dtype: torch.dtype = torch.float32,
    ):
        self.pool = pool
        self.channels_last = channels_last
        self.dtype = dtype

    @classmethod
    def table(cls, table: RoIPoolTable) -> Pooler:
        buffers: list[torch.Tensor] = []

        def pool(index: slice | torch.Tensor) -> torch.Tensor:
            rows = table.corners[0][index].numel()
            if not buffers or buffers[0].shape[0] < rows:
                buffers[:] = [table.table.new_empty(rows, table.channels) for _ in range(2)]
            out, scratch = (b[:rows] for b in buffers)
            return table.pool(index, out, scratch).flatten(1)

        return cls(pool, channels_last=True, dtype=table.table.dtype)

    def __call__(self, index: slice | torch.Tensor) -> torch.Tensor:
        return self.pool(index)

    def channel_major(self, rows: torch.Tensor, size: int) -> torch.Tensor:
        """`rows` (D, ...) in this pooler's order -> fc6's (C, P, P) order."""
        if not self.channels_last:
            return rows
        tail = rows.shape[1:]
        view = rows.reshape(size, size, -1, *tail)
        return view.permute(2, 0, 1, *range(3, view.dim())).reshape(rows.shape)


class ApproximatePass(RankingPass):
    """A RankingPass whose fc6 pre-activation comes from `prepare` + `fc6`, in `cfg.ranking_dtype`.

    Subclasses implement `prepare(features)` (once per minibatch: bases, folded weights) and
    `fc6(sl)` -> (n, fc6_dim) fp32 pre-activations of rois[sl].
    """

    def __init__(
        self,
        cfg: SamplerConfig,
        model: torch.nn.Module,
        features: torch.Tensor,
        targets: RoITargets,
        norm_targets: torch.Tensor,
        dropout: bool = True,
        chunk_size: int | None = None,
        mark: Callable[[str], None] | None = None,
    ):
        super().__init__(
            model, features, targets, norm_targets, dropout=dropout, chunk_size=chunk_size,
            mark=mark,
        )  # fmt: skip
        self.cfg = cfg
        self.dtype = DTYPES[cfg.ranking_dtype]
        self.rng_state: RNGState | None = None  # the global RNG as the pass began
        self._weights: dict[int, torch.Tensor] = {}

    # ---------------------------------------------------------------- subclass hooks
    def prepare(self, features: torch.Tensor) -> None:
        """Per-minibatch precomputation (features detached)."""

    def fc6(self, sl: slice) -> torch.Tensor:
        """fc6 pre-activations (n, fc6_dim), fp32, of rois[sl]."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared parts
    def cast(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` in the pass's dtype, converted once per minibatch."""
        if tensor.dtype == self.dtype:
            return tensor
        key = id(tensor)
        if key not in self._weights:
            self._weights[key] = tensor.to(self.dtype)
        return self._weights[key]

    def linear(self, layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """layer(x) in the pass's dtype, returned as fp32."""
        if self.dtype == torch.float32:
            return layer(x)
        out = F.linear(x.to(self.dtype), self.cast(layer.weight), self.cast(layer.bias))
        return out.float()

    def pool_op(self) -> RoIPooler:
        """The model's RoI pooling op, at `sampler.ranking_sampling_ratio` when that is set."""
        pooler = self.model.pooler
        ratio = self.cfg.ranking_sampling_ratio
        if ratio is None or ratio == pooler.sampling_ratio:
            return pooler
        if pooler.op != "roi_align":
            raise ConfigError(
                f"sampler.ranking_sampling_ratio: {ratio} needs model.roi_op: roi_align (it is "
                f"'{pooler.op}', which has no sampling points); remove it"
            )
        return RoIPooler(pooler.op, pooler.output_size, pooler.spatial_scale, ratio)

    def pooler(self, features: torch.Tensor) -> Pooler:
        """How this pass pools: the sparse-table roi_pool on CPU (its values in the pass's dtype),
        else the model's op (fp32) at the pass's sampling ratio."""
        op = self.pool_op()
        if op.op == "roi_pool" and features.device.type == "cpu":
            table = RoIPoolTable(
                features, self.targets.rois, op.output_size, op.spatial_scale, self.dtype
            )
            return Pooler.table(table)
        rois = self.targets.rois

        def pool(index: slice | torch.Tensor) -> torch.Tensor:
            return op(features, rois[index]).flatten(1)

        return Pooler(pool, channels_last=False)

    def _run(self) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features.detach()
        self.rng_state = capture_rng(features.device)
        rois, labels, tgt = self.targets.rois, self.targets.labels, self.norm_targets
        chunk = self.chunk_size or self.auto_chunk_size(features)
        head = self.model.roi_head
        out_cls, out_box = [], []
        with torch.autocast(features.device.type, enabled=False):
            if rois.shape[0]:
                self.prepare(features)
            for start in range(0, rois.shape[0], chunk):
                sl = slice(start, start + chunk)
                x = head.drop(torch.relu(self.fc6(sl)), readonly=True)
                x = head.drop(torch.relu(self.linear(head.fc7, x)), readonly=True)
                cls_logits, deltas = self.linear(head.cls_score, x), self.linear(head.bbox_pred, x)
                lc, lb = per_roi_losses(cls_logits, deltas, labels[sl], tgt[sl])
                out_cls.append(lc)
                out_box.append(lb)
        self._weights = {}
        if not out_cls:
            empty = rois.new_zeros(0)
            return empty, empty
        return torch.cat(out_cls), torch.cat(out_box)
