"""Image reading and Fast R-CNN's test/train resize: shorter side to a scale, longer side capped."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ohem_tune.data.records import ImageRecord
from ohem_tune.errors import DataError


def load_image(record: ImageRecord) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of the record's image, mirrored when record.flipped."""
    try:
        with Image.open(record.path) as img:
            pixels = np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(
            f"{record.path}: image file not found (image {record.image_id!r}); restore it or "
            "remove the image from the split list"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{record.path}: unreadable or corrupt image ({exc}); re-export it or remove image "
            f"{record.image_id!r} from the split list"
        ) from None
    if pixels.shape[:2] != (record.height, record.width):
        raise DataError(
            f"{record.path}: image is {pixels.shape[1]}x{pixels.shape[0]} but the annotation says "
            f"{record.width}x{record.height}; fix the annotation's size"
        )
    if record.flipped:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels)


def compute_scale(height: int, width: int, target_size: int, max_size: int) -> float:
    """Fast R-CNN's resize factor: shorter side -> target_size unless longer side > max_size."""
    short, long = min(height, width), max(height, width)
    scale = target_size / short
    if round(scale * long) > max_size:
        scale = max_size / long
    return float(scale)


def prepare_image(
    image: np.ndarray,
    target_size: int,
    max_size: int,
    pixel_mean: tuple[float, float, float] | np.ndarray,
) -> tuple[torch.Tensor, float]:
    """(3, H', W') float32 tensor, mean-subtracted and resized (bilinear), and the scale used."""
    height, width = image.shape[:2]
    scale = compute_scale(height, width, target_size, max_size)
    if not (image.flags.writeable and image.flags.c_contiguous):
        image = np.array(image)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float()
    tensor -= torch.as_tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if (new_h, new_w) != (height, width):
        tensor = F.interpolate(
            tensor[None], size=(new_h, new_w), mode="bilinear", align_corners=False
        )[0]
    return tensor.contiguous(), scale


def pad_images(images: list[torch.Tensor], size_divisibility: int = 1) -> torch.Tensor:
    """(N, 3, H, W) batch, zero padded at the bottom/right to the largest image."""
    max_h = max(img.shape[1] for img in images)
    max_w = max(img.shape[2] for img in images)
    if size_divisibility > 1:
        max_h = -(-max_h // size_divisibility) * size_divisibility
        max_w = -(-max_w // size_divisibility) * size_divisibility
    batch = images[0].new_zeros((len(images), 3, max_h, max_w))
    for i, img in enumerate(images):
        batch[i, :, : img.shape[1], : img.shape[2]] = img
    return batch
