"""The train/* statistics of a log period, kept on the device until they are read.

Losses and sampler statistics stay 0-d device tensors; `read()` copies all pending ones to the
host at once (one synchronisation per log period instead of several per iteration) and checks
the losses are finite. Each value is read exactly as `.item()` would read it, and the averages
are taken in the same order as before, so the logged numbers do not change.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch

from ohem_tune import tracking_keys as K
from ohem_tune.errors import TrainingError

Value = float | torch.Tensor


class PeriodStats:
    """Per-iteration values of the iterations since the last `clear()`."""

    def __init__(self) -> None:
        self._micro: dict[int, list[dict[str, Value]]] = {}  # per iteration: its micro-batches
        self._host: dict[int, dict[str, float]] = {}
        self._read: dict[int, dict[str, float]] = {}

    def add(self, iteration: int, micro_batches: list[dict[str, Value]], host: dict[str, float]):
        """One iteration: its micro-batches' device values, and host values (lr, times)."""
        self._micro[iteration] = micro_batches
        self._host[iteration] = host

    def read(self) -> None:
        """Copy the pending device values to the host (one sync); raise on a non-finite loss."""
        pending = [(values, key) for micro in self._micro.values() for values in micro
                   for key, v in values.items() if isinstance(v, torch.Tensor)]  # fmt: skip
        if pending:
            scalars = [torch.as_tensor(values[key]).detach().reshape(()) for values, key in pending]
            host = torch.stack([t.double() for t in scalars]).tolist()  # float32 -> double: exact
            for (values, key), value in zip(pending, host, strict=True):
                values[key] = value
        for it in sorted(self._micro):
            micro = self._micro.pop(it)
            for values in micro:
                if not math.isfinite(values[K.LOSS]):  # type: ignore[arg-type]
                    cls, box = values[K.LOSS_CLS], values[K.LOSS_BBOX]
                    raise TrainingError(
                        f"non-finite loss at iteration {it} (loss_cls={cls:.4g}, "
                        f"loss_bbox={box:.4g}); lower solver.lr, add solver.warmup_iters or set "
                        "solver.clip_grad_norm"
                    )
            self._read[it] = {**_iteration_stats(micro), **self._host.pop(it)}

    def iteration(self, it: int) -> dict[str, float]:
        """The values of a read iteration."""
        return self._read[it]

    def means(self) -> dict[str, float]:
        """Means over the read iterations of the period (lr: the last one), then forget them."""
        period: dict[str, list[float]] = defaultdict(list)
        for it in sorted(self._read):
            for key, value in self._read[it].items():
                period[key].append(value)
        self._read = {}
        metrics = {key: float(np.mean(values)) for key, values in period.items()}
        if K.LR in period:
            metrics[K.LR] = period[K.LR][-1]
        return metrics


def _iteration_stats(micro: list[dict[str, Value]]) -> dict[str, float]:
    """One SGD update: the mean over its micro-batches, num_selected summed."""
    totals: dict[str, list[float]] = defaultdict(list)
    for values in micro:
        for key, value in values.items():
            totals[key].append(float(value))
    stats = {key: float(np.mean(values)) for key, values in totals.items()}
    if K.NUM_SELECTED in totals:
        stats[K.NUM_SELECTED] = float(np.sum(totals[K.NUM_SELECTED]))  # per SGD update
    return stats
