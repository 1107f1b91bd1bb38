"""Seconds per training phase (data / forward / ranking / backward) without extra host syncs.

CPU: the wall clock at each phase boundary. CUDA: an event recorded on the stream at each
boundary, read once the iteration has synchronised, so timing adds no synchronisation: an
event's time is when the GPU reached that point, or the host did when the GPU was waiting.
"""

from __future__ import annotations

import time

import torch

PHASES = ("data", "forward", "ranking", "backward")


class PhaseClock:
    """Boundaries of one iteration's phases; `mark(phase)` closes the work since the last mark."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._marks: list[tuple[str, float | torch.cuda.Event]] = []

    def _now(self) -> float | torch.cuda.Event:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self) -> None:
        """Begin an iteration (on CUDA, after the previous one synchronised: the GPU is idle)."""
        self._marks = [("", self._now())]

    def mark(self, phase: str) -> None:
        """The work since the previous mark belonged to `phase` (phases may recur)."""
        self._marks.append((phase, self._now()))

    def seconds(self) -> dict[str, float]:
        """Seconds per phase since start(); on CUDA call it after the stream synchronised."""
        out = dict.fromkeys(PHASES, 0.0)
        for (_, t0), (phase, t1) in zip(self._marks, self._marks[1:], strict=False):
            if self.cuda:
                dt = t0.elapsed_time(t1) / 1000.0  # type: ignore[union-attr]
            else:
                dt = t1 - t0  # type: ignore[operator]
            out[phase] = out.get(phase, 0.0) + dt
        return out
