"""`sampler.ranking: lowrank`: fc6 on a rank-r basis of this minibatch's pooled features.

fc6 (e.g. 18432 -> 4096 at paper scale) dominates the exact pass. Pooled ReLU features are
close to low-rank even when fc6's weights are random (from scratch, W's spectrum is flat, so a
truncated SVD of W itself would not do), so the basis comes from the data: the top-r principal
directions P of S = min(R, 4r) RoIs spread evenly over the minibatch (no RNG drawn), then

    fc6(x) ~ (W P) (P^T (x - mu)) + (W mu + b)

costs r (D + O) per RoI instead of D O. The basis is rebuilt for every minibatch (one S x S
Gram matrix and W P), so the pass keeps no state and a resumed run stays bit-for-bit. With
r >= S - 1 and S = R (few RoIs) the basis spans every RoI: the exact losses up to rounding.
"""

from __future__ import annotations

import torch

from ohem_tune.samplers.ranking.common import ApproximatePass

DEFAULT_RANK = 128
SAMPLES_PER_RANK = 4  # basis estimated from S = 4 r RoIs
RELATIVE_EIGEN_FLOOR = 1e-6  # directions with less variance (relative to the top) are dropped
WEIGHT_ROWS = 512  # fc6 rows converted to the pass's dtype at a time (small allocations)


class LowRankPass(ApproximatePass):
    """Exact pooling, fc6 through a data-aware rank-r factorisation."""

    def prepare(self, features: torch.Tensor) -> None:
        rois = self.targets.rois
        rank = self.cfg.ranking_rank or DEFAULT_RANK
        num = rois.shape[0]
        samples = min(num, SAMPLES_PER_RANK * rank)
        self._pool = self.pooler(features)
        idx = torch.linspace(0, num - 1, samples, device=rois.device).round().long()
        xs = self._pool(idx).float()  # (S, D), the pooler's order
        mu = xs.mean(0)
        xc = xs - mu
        low = self.dtype
        xl = xc.to(low)
        evals, evecs = torch.linalg.eigh((xl @ xl.T).float())  # ascending
        keep = int((evals > evals[-1].clamp(min=0) * RELATIVE_EIGEN_FLOOR).sum())
        k = max(1, min(rank, keep))
        evals, evecs = evals[-k:].clamp(min=1e-30), evecs[:, -k:]
        basis = xl.T @ (evecs / evals.sqrt()).to(low)  # (D, k), orthonormal columns
        size = self.model.pooler.output_size
        fc6 = self.model.roi_head.fc6
        basis_w = self._pool.channel_major(basis, size)  # rows in fc6's column order
        self._wp = self._times(fc6.weight, basis_w)  # (O, k): W P
        self._bias = fc6.bias + fc6.weight @ self._pool.channel_major(mu, size)
        self._basis, self._mu = basis, mu.to(self._pool.dtype)
        self._low: torch.Tensor | None = None

    def _times(self, weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """weight @ basis in the pass's dtype, converting WEIGHT_ROWS rows at a time into one
        reused buffer (a whole-matrix conversion of fc6 costs more in page faults than it saves)."""
        if self.dtype == weight.dtype:
            return weight @ basis
        out = weight.new_empty(weight.shape[0], basis.shape[1], dtype=self.dtype)
        buffer = weight.new_empty(
            min(WEIGHT_ROWS, weight.shape[0]), weight.shape[1], dtype=self.dtype
        )
        for i in range(0, weight.shape[0], WEIGHT_ROWS):
            rows = buffer[: weight.shape[0] - i].copy_(weight[i : i + WEIGHT_ROWS])
            torch.matmul(rows, basis, out=out[i : i + WEIGHT_ROWS])
        return out

    def fc6(self, sl: slice) -> torch.Tensor:
        x = self._pool(sl)
        x = x.sub_(self._mu) if self._pool.channels_last else x - self._mu  # own buffer: in place
        if self.dtype != x.dtype:
            if self._low is None or self._low.shape[0] < x.shape[0]:
                self._low = torch.empty_like(x, dtype=self.dtype)
            x = self._low[: x.shape[0]].copy_(x)
        return (x @ self._basis @ self._wp.T).float() + self._bias
