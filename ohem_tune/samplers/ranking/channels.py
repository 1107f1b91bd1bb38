"""`sampler.ranking: channels` (roi_align only): pool the feature map's top-r principal channels.

On the CPU config the exact pass is mostly roi_align over all RoIs, whose cost grows with the
channel count. roi_align is linear in each channel, so projecting the map first commutes with
pooling: with Q (C x r) the top-r principal directions of this minibatch's feature vectors
(every pixel of every image) and mu their mean,

    pool(F) ~ Q pool(Q^T (F - mu)) + mu pool(1)
    fc6(pool(F)) ~ [W Q, W mu] pool([Q^T (F - mu); 1])

so roi_align runs on r + 1 channels and fc6 on (r + 1) P^2 inputs instead of C P^2. Q comes
from a randomized subspace iteration on the C x C scatter matrix (Halko, Martinsson & Tropp
2011: a few products with a fixed Gaussian test matrix from a private generator, so the global
RNG and the dropout masks are untouched; CPU and CUDA generators differ, so the basis is
reproducible per device), ~3x cheaper than its full eigendecomposition at C = 224. With
r = C, Q is the identity: the exact losses up to rounding. Max pooling (roi_pool) does not
commute with a projection, so this method refuses it.
"""

from __future__ import annotations

import torch

from ohem_tune.errors import ConfigError
from ohem_tune.samplers.ranking.common import ApproximatePass

DEFAULT_RANK = 48
OVERSAMPLE = 8  # extra test vectors of the randomized range finder
POWER_ITERATIONS = 2
BASIS_SEED = 0  # the test matrix's private generator: the same basis for the same features


class ChannelsPass(ApproximatePass):
    """roi_align of a projected feature map, fc6 folded onto the projection."""

    def prepare(self, features: torch.Tensor) -> None:
        if self.model.pooler.op != "roi_align":
            raise ConfigError(
                f"sampler.ranking: channels needs model.roi_op: roi_align (it is "
                f"'{self.model.pooler.op}'; max pooling does not commute with a channel "
                "projection); use sampler.ranking: lowrank"
            )
        n, c, h, w = features.shape
        rank = min(self.cfg.ranking_rank or DEFAULT_RANK, c)
        pixels = features.permute(0, 2, 3, 1).reshape(-1, c).float()  # fp16 maps under AMP
        mu = pixels.mean(0)
        centred = pixels - mu
        q = top_eigenvectors(centred.T @ centred, rank)  # (C, r)
        projected = (centred @ q).view(n, h, w, rank).permute(0, 3, 1, 2)
        ones = features.new_ones(n, 1, h, w)
        self._map = torch.cat([projected, ones], dim=1).contiguous()  # (N, r + 1, H, W)
        fc6 = self.model.roi_head.fc6
        size = self.model.pooler.output_size
        weight = fc6.weight.view(fc6.out_features, c, size * size)  # no copy
        fold = torch.cat([q, mu[:, None]], dim=1).T  # (r + 1, C)
        folded = torch.matmul(fold, weight)  # (O, r + 1, P * P): [W Q, W mu]
        self._weight = folded.reshape(fc6.out_features, -1).to(self.dtype)
        self._bias = fc6.bias
        self._pool = self.pool_op()

    def fc6(self, sl: slice) -> torch.Tensor:
        pooled = self._pool(self._map, self.targets.rois[sl]).flatten(1)
        return (pooled.to(self.dtype) @ self._weight.T).float() + self._bias


def top_eigenvectors(scatter: torch.Tensor, rank: int) -> torch.Tensor:
    """(C, rank) orthonormal basis of the top-`rank` eigenvectors of the PSD `scatter` (C, C):
    the identity for rank >= C, else a randomized subspace iteration (see the module doc)."""
    c = scatter.shape[0]
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    if rank >= c:
        return torch.eye(c, dtype=scatter.dtype, device=scatter.device)
    width = rank + OVERSAMPLE
    if width >= c:  # the sketch would span everything: decompose directly
        return torch.linalg.eigh(scatter)[1][:, -rank:]
    generator = torch.Generator(device=scatter.device).manual_seed(BASIS_SEED)
    test = torch.randn(c, width, generator=generator, device=scatter.device, dtype=scatter.dtype)
    basis = scatter @ test
    for _ in range(POWER_ITERATIONS):
        basis = scatter @ torch.linalg.qr(basis).Q
    basis = torch.linalg.qr(basis).Q  # (C, width)
    _, vecs = torch.linalg.eigh(basis.T @ scatter @ basis)  # ascending
    return basis @ vecs[:, -rank:]
