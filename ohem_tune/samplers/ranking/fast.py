"""`sampler.ranking: fast`: the exact head's maths with faster kernels, in float32 or bfloat16.

Pooling: the sparse-table roi_pool on CPU (bit-identical to torchvision's, ~4x faster at paper
scale), torchvision's op otherwise. The head runs in `sampler.ranking_dtype`: with float32 the
losses, and so the selection, are the exact pass's; bfloat16 halves fc6/fc7's cost on CPUs with
AVX512-BF16 and is the obvious choice on GPUs (there a hypothesis until measured).
"""

from __future__ import annotations

import torch

from ohem_tune.samplers.ranking.common import ApproximatePass


class FastPass(ApproximatePass):
    """Exact pooling, fc6 in the pass's dtype."""

    def prepare(self, features: torch.Tensor) -> None:
        self._pool = self.pooler(features)
        self._size = self.model.pooler.output_size

    def fc6(self, sl: slice) -> torch.Tensor:
        x = self._pool(sl)
        if self._pool.channels_last:  # fc6's columns are (C, P, P)
            n, size = x.shape[0], self._size
            x = x.view(n, size, size, -1).permute(0, 3, 1, 2).reshape(n, -1)
        return self.linear(self.model.roi_head.fc6, x)
