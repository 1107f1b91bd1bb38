"""torchvision's roi_pool, bit for bit, from a 2-D sparse table of window maxima (CPU).

torchvision's CPU roi_pool visits every pixel of every bin once per channel with scalar code;
at paper scale (4000 RoIs, 512 channels) that is most of the pooling time. Here every bin's max
is the max of four overlapping power-of-two windows looked up in a channels-last table built
once per minibatch, so a bin costs four contiguous C-vector reads. Max is exact, so the output
equals torchvision's (same bin rounding, empty bins 0).
"""

from __future__ import annotations

import torch


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C++ std::round (halves away from zero) for x >= 0; torch.round rounds halves to even."""
    return torch.where(x - torch.floor(x) == 0.5, torch.ceil(x), torch.round(x))


def _log2_floor(n: torch.Tensor) -> torch.Tensor:
    """floor(log2(n)) of positive integers, exactly (n < 2**24)."""
    return torch.frexp(n.clamp(min=1).float())[1].long() - 1


def roi_pool_bins(
    rois: torch.Tensor, output_size: int, spatial_scale: float, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hstart, hend, wstart, wend), each (R, P): the pixel range of every bin, as torchvision."""
    x1, y1, x2, y2 = (_round_half_away(rois[:, i] * spatial_scale).long() for i in range(1, 5))
    roi_w = torch.clamp(x2 - x1 + 1, min=1).float()
    roi_h = torch.clamp(y2 - y1 + 1, min=1).float()
    p = torch.arange(output_size, dtype=torch.float32, device=rois.device)[None]
    bin_w = (roi_w / output_size)[:, None]
    bin_h = (roi_h / output_size)[:, None]
    ws = (torch.floor(p * bin_w).long() + x1[:, None]).clamp(0, width)
    we = (torch.ceil((p + 1) * bin_w).long() + x1[:, None]).clamp(0, width)
    hs = (torch.floor(p * bin_h).long() + y1[:, None]).clamp(0, height)
    he = (torch.ceil((p + 1) * bin_h).long() + y1[:, None]).clamp(0, height)
    return hs, he, ws, we


class RoIPoolTable:
    """roi_pool of `rois` (R, 5) over `features` (N, C, H, W); `pool(index)` pools rois[index].

    The table holds, for every pixel and level (a, b), the max over the 2**a x 2**b window
    starting there: levels up to the largest bin of these RoIs, A * B * N * H * W * C floats
    (paper scale: 3 x 3 levels of a 2 x 36 x 49 x 512 map, 65 MB).
    """

    def __init__(
        self,
        features: torch.Tensor,
        rois: torch.Tensor,
        output_size: int,
        spatial_scale: float,
        dtype: torch.dtype | None = None,
    ):
        n, c, h, w = features.shape
        self.channels = c
        self.output_size = output_size
        hs, he, ws, we = roi_pool_bins(rois, output_size, spatial_scale, h, w)
        lh, lw = he - hs, we - ws
        a, b = _log2_floor(lh), _log2_floor(lw)
        levels_a = int(a.max()) + 1 if a.numel() else 1
        levels_b = int(b.max()) + 1 if b.numel() else 1
        self.levels = (levels_a, levels_b)
        # (rows + 1, C), last row 0; in `dtype` the max is that of the rounded features, which
        # is the rounded max (rounding is monotonic)
        self.table = self._build(features.to(dtype or features.dtype), levels_a, levels_b)
        zero_row = self.table.shape[0] - 1
        # per (RoI, bin): the table rows of the four corner windows; empty bins read the 0 row
        level = (a[:, :, None] * levels_b + b[:, None, :]) * n + rois[:, 0].long()[:, None, None]
        h0, h1 = hs, (he - (1 << a)).clamp(min=0)
        w0, w1 = ws, (we - (1 << b)).clamp(min=0)
        empty = (lh[:, :, None] <= 0) | (lw[:, None, :] <= 0)  # (R, P, P)

        def rows(hh: torch.Tensor, ww: torch.Tensor) -> torch.Tensor:
            flat = (level * h + hh[:, :, None]) * w + ww[:, None, :]
            return torch.where(empty, zero_row, flat.clamp(0, zero_row - 1))

        self.corners = (rows(h0, w0), rows(h1, w0), rows(h0, w1), rows(h1, w1))

    @staticmethod
    def _build(features: torch.Tensor, levels_a: int, levels_b: int) -> torch.Tensor:
        n, c, h, w = features.shape
        flat = features.new_empty(levels_a * levels_b * n * h * w + 1, c)
        flat[-1] = 0.0
        table = flat[:-1].view(levels_a, levels_b, n, h, w, c)
        table[0, 0] = features.permute(0, 2, 3, 1)
        for a in range(1, levels_a):  # windows 2**a high: max of two 2**(a-1) windows
            s, prev, cur = 1 << (a - 1), table[a - 1, 0], table[a, 0]
            torch.maximum(prev[:, : h - s], prev[:, s:], out=cur[:, : h - s])
            cur[:, h - s :] = prev[:, h - s :]  # windows past the edge: never looked up
        for b in range(1, levels_b):
            s, prev, cur = 1 << (b - 1), table[:, b - 1], table[:, b]
            torch.maximum(prev[:, :, :, : w - s], prev[:, :, :, s:], out=cur[:, :, :, : w - s])
            cur[:, :, :, w - s :] = prev[:, :, :, w - s :]
        return flat

    def pool(
        self,
        index: slice | torch.Tensor,
        out: torch.Tensor | None = None,
        scratch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(n, P, P, C) channels-last pooled features of rois[index]; `out` and `scratch`, when
        given, are (n * P * P, C) buffers reused across calls (no large allocation per call)."""
        corners = [rows[index].reshape(-1) for rows in self.corners]
        out = torch.index_select(self.table, 0, corners[0], out=out)
        for rows in corners[1:]:
            scratch = torch.index_select(self.table, 0, rows, out=scratch)
            torch.maximum(out, scratch, out=out)
        p = self.output_size
        return out.view(-1, p, p, self.channels)
