"""Transforms: Fast R-CNN's scale rule, resize/normalise, padding, flipped reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ohem_tune.config import ConfigError, build_config
from ohem_tune.data.records import ImageRecord
from ohem_tune.data.transforms import (
    CONVENTIONS,
    InputConvention,
    compute_scale,
    load_image,
    pad_images,
    prepare_image,
    resolve_input_convention,
)
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
    tensor, scale = prepare_image(image, target_size=100, max_size=1000, convention=(10, 20, 30))
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


# --- input conventions (docs/training.md, "Input conventions and pretrained weights") ---


def _legacy_prepare(image: np.ndarray, target: int, max_size: int) -> torch.Tensor:
    """prepare_image as it was before input conventions: RGB 0-255 minus the RGB mean."""
    scale = compute_scale(image.shape[0], image.shape[1], target, max_size)
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    tensor -= torch.tensor([122.77, 115.95, 102.98]).view(3, 1, 1)
    size = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    if size != image.shape[:2]:
        tensor = torch.nn.functional.interpolate(
            tensor[None], size=size, mode="bilinear", align_corners=False
        )[0]
    return tensor


@pytest.mark.parametrize("target", [64, 100])  # no resize, and a bilinear upscale
def test_default_convention_is_bit_identical_to_the_synthetic_path(target):
    cfg = build_config({})
    conv = resolve_input_convention(cfg)
    assert conv == InputConvention("RGB", 255, (122.77, 115.95, 102.98), (1.0, 1.0, 1.0))
    image = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    tensor, _ = prepare_image(image, target, 1000, conv)
    assert torch.equal(tensor, _legacy_prepare(image, target, 1000))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"backbone": "small_vggm"}, CONVENTIONS["ours"]),
        ({"backbone": "vgg16"}, CONVENTIONS["ours"]),  # from scratch
        ({"backbone": "vgg16", "weights": "w.pth"}, CONVENTIONS["torchvision"]),
        ({"backbone": "resnet50", "weights": "w.pth"}, CONVENTIONS["torchvision"]),
        ({"backbone": "vgg_cnn_m_1024", "weights": "w.pth"}, CONVENTIONS["caffe"]),
        (
            {"backbone": "vgg16", "weights": "w.pth", "weights_format": "caffe"},
            CONVENTIONS["caffe"],
        ),
    ],
)
def test_convention_follows_the_weights(model, expected):
    cfg = build_config({"model": model})
    assert resolve_input_convention(cfg) == expected


def test_caffe_and_torchvision_conventions_match_their_sources():
    caffe, tv = CONVENTIONS["caffe"], CONVENTIONS["torchvision"]
    # fast-rcnn lib/fast_rcnn/config.py: PIXEL_MEANS = [[[102.9801, 115.9465, 122.7717]]] (BGR)
    assert (caffe.channel_order, caffe.pixel_range, caffe.mean, caffe.std) == (
        "BGR", 255, (102.9801, 115.9465, 122.7717), (1.0, 1.0, 1.0)
    )  # fmt: skip
    assert (tv.channel_order, tv.pixel_range, tv.mean, tv.std) == (
        "RGB", 1, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    )  # fmt: skip


def test_explicit_input_fields_win_and_presets_follow_order_and_range():
    cfg = build_config(
        {"model": {"backbone": "vgg16", "weights": "w.pth"}, "input": {"pixel_range": 255}}
    )
    conv = resolve_input_convention(cfg)  # torchvision's mean/std in 0-255 units
    assert conv.pixel_range == 255
    assert conv.mean == pytest.approx((0.485 * 255, 0.456 * 255, 0.406 * 255))
    assert conv.std == pytest.approx((0.229 * 255, 0.224 * 255, 0.225 * 255))
    cfg = build_config({"input": {"channel_order": "BGR"}})  # "ours" mean reordered to B, G, R
    assert resolve_input_convention(cfg).mean == (102.98, 115.95, 122.77)
    cfg = build_config({"input": {"pixel_mean": [1, 2, 3], "pixel_std": [2, 2, 2]}})
    assert resolve_input_convention(cfg) == InputConvention(
        "RGB", 255, (1.0, 2.0, 3.0), (2.0, 2.0, 2.0)
    )


def test_torchvision_convention_is_torchvision_preprocessing():
    from torchvision.transforms import functional as TF

    image = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    ours, scale = prepare_image(image, 64, 1000, CONVENTIONS["torchvision"])
    ref = TF.normalize(TF.to_tensor(image), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert scale == 1.0
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_caffe_convention_feeds_bgr_minus_bgr_mean():
    image = np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    ours, _ = prepare_image(image, 64, 1000, CONVENTIONS["caffe"])
    bgr = image[:, :, ::-1].astype(np.float32) - np.array([102.9801, 115.9465, 122.7717])
    assert torch.allclose(ours, torch.from_numpy(bgr.transpose(2, 0, 1)).float(), atol=1e-4)


def test_bad_pixel_std_is_one_line_config_error():
    with pytest.raises(ConfigError, match="pixel_std") as err:
        build_config({"input": {"pixel_std": [1, 0, 1]}})
    assert "\n" not in str(err.value)
