"""The sparse-table roi_pool equals torchvision's bit for bit (rounding, clipping, empty bins)."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_pool

from ohem_tune.samplers.ranking.roi_pool_table import RoIPoolTable


def _rois(n: int, height: int, width: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Random boxes in image pixels, some past the border, plus hand-picked edge cases."""
    h, w = height / scale, width / scale
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 1.2, h * 1.2]) - 0.1 * w
    wh = torch.rand(n, 2, generator=gen) * torch.tensor([w, h])
    boxes = torch.cat([xy, xy + wh], 1)
    edge = torch.tensor(
        [
            [0.0, 0.0, w - 1, h - 1],  # the whole image
            [0.5 / scale, 1.5 / scale, 2.5 / scale, 3.5 / scale],  # halves: std::round's ties
            [3.0, 3.0, 3.0, 3.0],  # one pixel
            [w + 10, h + 10, w + 50, h + 50],  # entirely outside: every bin empty
            [-40.0, -40.0, -5.0, -5.0],
        ]
    )
    boxes = torch.cat([edge, boxes])
    batch = torch.randint(0, 2, (boxes.shape[0], 1), generator=gen).float()
    return torch.cat([batch, boxes], 1)


@pytest.mark.parametrize(("size", "scale", "hw"), [(6, 1 / 16, (13, 17)), (7, 1 / 8, (9, 22))])
def test_sparse_table_roi_pool_is_torchvision_roi_pool(size: int, scale: float, hw: tuple):
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, *hw, generator=gen) - 0.5  # negative maxima occur
    rois = _rois(300, *hw, scale, gen)
    expected = roi_pool(features, rois, size, scale)
    table = RoIPoolTable(features, rois, size, scale)
    whole = table.pool(slice(None)).permute(0, 3, 1, 2)
    assert torch.equal(whole, expected)
    # any index, and with reused output buffers
    pick = torch.randperm(rois.shape[0], generator=gen)[:37]
    out, scratch = torch.empty(37 * size * size, 5), torch.empty(37 * size * size, 5)
    for _ in range(2):
        picked = table.pool(pick, out, scratch).permute(0, 3, 1, 2)
        assert torch.equal(picked, expected[pick])
    assert picked.data_ptr() == out.data_ptr()


def test_table_levels_cover_only_the_largest_bin():
    features = torch.randn(1, 2, 32, 32)
    small = torch.tensor([[0.0, 0.0, 0.0, 11.0, 11.0]])  # 12 px at scale 1, 6 bins: 2 or 3 px
    assert RoIPoolTable(features, small, 6, 1.0).levels == (2, 2)
    wide = torch.tensor([[0.0, 0.0, 0.0, 31.0, 5.0]])  # bins 6-7 px wide, 1 px high
    assert RoIPoolTable(features, wide, 6, 1.0).levels == (1, 3)
