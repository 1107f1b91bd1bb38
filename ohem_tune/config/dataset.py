"""Dataset section: which dataset, where, which splits, proposals, and input transforms."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ohem_tune.config.base import Section
from ohem_tune.config.errors import FieldError


class SyntheticConfig(Section):
    """The built-in procedurally generated dataset (written to disk in VOC + COCO layout)."""

    preset: Literal["tiny", "small", "paper"] = "small"
    seed: int = Field(0, ge=0)
    num_train: int | None = Field(None, ge=1, description="override the preset's train images")
    num_test: int | None = Field(None, ge=1, description="override the preset's test images")
    image_size: int | None = Field(None, ge=32, le=2048, description="override the preset's size")
    cache_dir: Path = Path(".ohem_cache/datasets")


class ProposalConfig(Section):
    """Where RoI proposals come from: a file per split, or a generator."""

    train_file: Path | None = None
    test_file: Path | None = None
    generator: Literal["synthetic", "selective_search", "none"] = Field(
        "synthetic",
        description="without a file: the synthetic set's own proposals, selective search "
        "(needs opencv-contrib-python-headless; cached), or none (ground truth only)",
    )
    cache_dir: Path = Field(
        Path(".ohem_cache/proposals"), description="where generated proposals are cached"
    )
    max_per_image: int | None = Field(
        None, ge=1, description="keep at most this many per image, in file order; None: all "
        "(the authors keep every box)",
    )  # fmt: skip
    unique_boxes: bool = Field(
        False, description="drop exact duplicates after rounding, keeping the first (the "
        "authors' ds_utils.unique_boxes; the paper profiles turn it on)",
    )  # fmt: skip
    min_size: float = Field(
        1.0, ge=0, description="drop proposals smaller than this (pixels), by min_size_rule"
    )
    min_size_rule: Literal["inclusive", "py_faster_rcnn"] = Field(
        "inclusive", description="inclusive: x2 - x1 + 1 >= min_size (both sides); "
        "py_faster_rcnn: the authors' filter_small_boxes, x2 - x1 >= min_size and "
        "y2 - y1 > min_size (their min_size is 2)",
    )  # fmt: skip


class DatasetConfig(Section):
    """Dataset format, root, splits and proposals."""

    format: Literal["synthetic", "voc", "coco"] = "synthetic"
    root: Path | None = None
    train_split: str = "trainval"
    test_split: str = "test"
    val_split: str = Field(
        "val",
        description="the split searches select on (train.eval_split: val); VOC07 has train/val "
        "(train on train then); the synthetic set always uses its own val split",
    )
    coco_train_json: Path | None = None
    coco_test_json: Path | None = None
    coco_train_images: Path | None = Field(
        None, description="COCO train image dir (relative to root); default: root"
    )
    coco_test_images: Path | None = Field(
        None, description="COCO test image dir (relative to root); default: root"
    )
    class_names: list[str] | None = Field(
        None, description="VOC class list; default: root/classes.json, else VOC's 20 classes"
    )
    use_difficult: bool = False
    synthetic: SyntheticConfig = SyntheticConfig()
    proposals: ProposalConfig = ProposalConfig()
    num_workers: int = Field(2, ge=0, le=64)

    @model_validator(mode="after")
    def _root_needed(self) -> DatasetConfig:
        if self.format in ("voc", "coco") and self.root is None:
            raise FieldError(
                "root", None, f"format '{self.format}' needs dataset.root (the dataset directory)"
            )
        return self


class InputConfig(Section):
    """Training-time image transforms (Fast R-CNN: shorter side 600, max 1000, flips)."""

    scales: list[int] = Field(default_factory=lambda: [600], min_length=1)
    max_size: int = Field(1000, ge=32)
    flip: bool = True
    # The input convention: None follows model.weights_format (resolved by
    # ohem_tune.data.transforms.resolve_input_convention); an explicit value wins.
    pixel_mean: tuple[float, float, float] | None = Field(
        None, description="one value per channel, in channel_order and pixel_range units; "
        "None: the weights format's mean (ours: RGB 122.77, 115.95, 102.98)",
    )  # fmt: skip
    pixel_std: tuple[float, float, float] | None = Field(
        None, description="divide by this after the mean (channel_order, pixel_range units); "
        "None: the weights format's (torchvision 0.229, 0.224, 0.225; caffe and ours: 1)",
    )  # fmt: skip
    channel_order: Literal["RGB", "BGR"] | None = Field(
        None, description="channel order fed to conv1; None: BGR for caffe weights, else RGB"
    )
    pixel_range: Literal[1, 255] | None = Field(
        None, description="1: pixels / 255 before mean/std (torchvision), 255: raw 0-255; "
        "None: the weights format's",
    )  # fmt: skip

    @model_validator(mode="after")
    def _scales_positive(self) -> InputConfig:
        bad = [s for s in self.scales if s < 16]
        if bad:
            raise FieldError("scales", self.scales, f"every scale must be >= 16 pixels, got {bad}")
        if self.pixel_std is not None and min(self.pixel_std) <= 0:
            raise FieldError(
                "pixel_std", self.pixel_std, "every std must be > 0 (1, 1, 1: no division)"
            )
        return self
