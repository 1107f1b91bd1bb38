"""Image reading, the input convention, and Fast R-CNN's resize (shorter side to a scale, longer
side capped).

The input convention (channel order, 0-255 or 0-1, mean, std) follows where the trunk's weights
come from (`model.weights_format`); `resolve_input_convention` is the one place that decides it,
for training, evaluation and checkpoints alike (docs/training.md, "Input conventions").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ohem_tune.data.records import ImageRecord
from ohem_tune.errors import DataError

if TYPE_CHECKING:
    from ohem_tune.config import Config


@dataclass(frozen=True)
class InputConvention:
    """How uint8 RGB pixels become trunk input: reorder to `channel_order`, divide by 255 when
    `pixel_range` is 1, subtract `mean`, divide by `std` (mean/std listed in channel_order)."""

    channel_order: Literal["RGB", "BGR"]
    pixel_range: Literal[1, 255]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def describe(self) -> str:
        """One-line human form, e.g. for logs: 'BGR 0-255, mean (...), std (...)'."""
        rng = "0-255" if self.pixel_range == 255 else "0-1"
        mean = ", ".join(f"{v:.10g}" for v in self.mean)
        std = ", ".join(f"{v:.10g}" for v in self.std)
        return f"{self.channel_order} {rng}, mean ({mean}), std ({std})"


# Per weights format: torchvision's ImageNet models (RGB, x/255, Normalize(mean, std), see
# torchvision's weight transforms); Caffe models as fast-rcnn feeds them (cv2.imread BGR, 0-255,
# cfg.PIXEL_MEANS = [[[102.9801, 115.9465, 122.7717]]] in lib/fast_rcnn/config.py, no std);
# "ours" (trunks trained from scratch here): RGB 0-255 minus the RGB-ordered mean, no std.
CONVENTIONS: dict[str, InputConvention] = {
    "torchvision": InputConvention("RGB", 1, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "caffe": InputConvention("BGR", 255, (102.9801, 115.9465, 122.7717), (1.0, 1.0, 1.0)),
    "ours": InputConvention("RGB", 255, (122.77, 115.95, 102.98), (1.0, 1.0, 1.0)),
}


def resolve_input_convention(cfg: Config) -> InputConvention:
    """The convention of `cfg`: input.* fields that are set win, the rest come from
    model.weights_format's (its mean/std reordered and rescaled to the chosen order and range)."""
    base = CONVENTIONS[cfg.model.weights_format or "ours"]
    inp = cfg.input
    order = inp.channel_order or base.channel_order
    rng = inp.pixel_range or base.pixel_range

    def adapt(values: tuple[float, float, float], scale: float) -> tuple[float, float, float]:
        if order != base.channel_order:
            values = values[::-1]
        return tuple(float(v) * scale for v in values)  # type: ignore[return-value]

    factor = rng / base.pixel_range
    mean = tuple(float(v) for v in inp.pixel_mean) if inp.pixel_mean else adapt(base.mean, factor)
    std = tuple(float(v) for v in inp.pixel_std) if inp.pixel_std else adapt(base.std, factor)
    if inp.pixel_std is None and base.std == (1.0, 1.0, 1.0):
        std = (1.0, 1.0, 1.0)  # "no std" stays no std in either range
    return InputConvention(order, rng, mean, std)  # type: ignore[arg-type]


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
    convention: InputConvention | Sequence[float] | np.ndarray,
) -> tuple[torch.Tensor, float]:
    """(3, H', W') float32 tensor of a uint8 RGB image, normalised by `convention` and resized
    (bilinear), and the scale used. A bare 3-value mean means RGB 0-255 minus it, no std."""
    if not isinstance(convention, InputConvention):
        mean = tuple(float(v) for v in np.asarray(convention, dtype=np.float64).reshape(3))
        convention = InputConvention("RGB", 255, mean, (1.0, 1.0, 1.0))  # type: ignore[arg-type]
    height, width = image.shape[:2]
    scale = compute_scale(height, width, target_size, max_size)
    if not (image.flags.writeable and image.flags.c_contiguous):
        image = np.array(image)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float()
    if convention.channel_order == "BGR":
        tensor = tensor.flip(0)  # conv1 of Caffe models expects B, G, R planes
    if convention.pixel_range == 1:
        tensor = tensor.div(255)  # torchvision's ToTensor
    tensor -= torch.as_tensor(convention.mean, dtype=torch.float32).view(3, 1, 1)
    if convention.std != (1.0, 1.0, 1.0):
        tensor /= torch.as_tensor(convention.std, dtype=torch.float32).view(3, 1, 1)
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
