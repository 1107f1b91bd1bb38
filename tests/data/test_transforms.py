"""Transforms: Fast R-CNN's scale rule, resize/normalise, padding, flipped reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ohem_tune.data.records import ImageRecord
from ohem_tune.data.transforms import compute_scale, load_image, pad_images, prepare_image
from ohem_tune.errors import DataError


def _record(path: Path, width: int, height: int, flipped: bool = False) -> ImageRecord:
    empty = np.zeros((0, 4), np.float32)
    return ImageRecord("x", path, width, height, empty, np.zeros(0, np.int64),
                       np.zeros(0, bool), empty, flipped)  # fmt: skip


@pytest.mark.parametrize(
    ("h", "w", "target", "max_size", "expected"),
    [
        (375, 500, 600, 1000, 600 / 375),  # shorter side to 600
        (300, 1000, 600, 1000, 1.0),  # 600/300 would make the long side 2000 > 1000
        (600, 600, 600, 1000, 1.0),
        (96, 128, 96, 160, 1.0),
    ],
)
def test_compute_scale_follows_fast_rcnn_rule(h, w, target, max_size, expected):
    assert compute_scale(h, w, target, max_size) == pytest.approx(expected)


def test_prepare_image_resizes_and_subtracts_mean():
    image = np.full((50, 100, 3), 100, dtype=np.uint8)
    tensor, scale = prepare_image(image, target_size=100, max_size=1000, pixel_mean=(10, 20, 30))
    assert scale == pytest.approx(2.0)
    assert tensor.shape == (3, 100, 200) and tensor.dtype == torch.float32
    assert torch.allclose(tensor[:, 50, 100], torch.tensor([90.0, 80.0, 70.0]))


def test_prepare_image_caps_longer_side():
    tensor, scale = prepare_image(np.zeros((100, 400, 3), np.uint8), 200, 500, (0, 0, 0))
    assert scale == pytest.approx(500 / 400)
    assert tuple(tensor.shape[1:]) == (125, 500)


def test_pad_images_zero_pads_bottom_right():
    a, b = torch.ones(3, 4, 6), torch.ones(3, 5, 3) * 2
    batch = pad_images([a, b])
    assert batch.shape == (2, 3, 5, 6)
    assert batch[0, :, 4].abs().sum() == 0 and batch[1, :, :, 3:].abs().sum() == 0
    assert torch.equal(batch[1, :, :5, :3], b)


def test_load_image_mirrors_flipped_records(tmp_path: Path):
    pixels = np.random.default_rng(0).integers(0, 255, (8, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    plain = load_image(_record(tmp_path / "a.png", 12, 8))
    flipped = load_image(_record(tmp_path / "a.png", 12, 8, flipped=True))
    assert np.array_equal(plain, pixels)
    assert np.array_equal(flipped, pixels[:, ::-1])


def test_load_image_rejects_corrupt_and_missing_files(tmp_path: Path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"bad\.jpg: unreadable or corrupt image"):
        load_image(_record(tmp_path / "bad.jpg", 4, 4))
    with pytest.raises(DataError, match=r"gone\.jpg: image file not found"):
        load_image(_record(tmp_path / "gone.jpg", 4, 4))


def test_load_image_checks_annotated_size(tmp_path: Path):
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="annotation says 10x8"):
        load_image(_record(tmp_path / "a.png", 10, 8))
