"""The test image pyramid: images resized to every test scale, and their conv features.

Single scale is a one-level pyramid. With several test scales every RoI is pooled from the level
where its scaled area is closest to `test.canonical_roi_size`^2 (224^2: Fast R-CNN's
`_project_im_rois`). Images are batched (`test.batch_images`) per level, zero padded. Both
`inference` (the first pass) and `iterative` (re-scoring regressed boxes) use these types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ohem_tune.config import Config
from ohem_tune.data.records import ImageRecord
from ohem_tune.data.transforms import (
    load_image,
    pad_images,
    prepare_image,
    resolve_input_convention,
)

MAX_ROIS_PER_POOL = 4096  # pool + head in chunks: bounds memory for 2000 RoIs x many images


@dataclass
class PyramidImage:
    """One test image resized to every test scale (CPU tensors), with its original size."""

    index: int  # record index in the dataset
    levels: list[torch.Tensor]  # per scale (3, H_l, W_l), normalised
    scales: list[float]  # per scale resize factor
    height: int
    width: int
    proposals: torch.Tensor  # (P, 4) original-image inclusive pixels


class PyramidImages(torch.utils.data.Dataset):
    """Loads and resizes test images (what DataLoader workers run)."""

    def __init__(self, records: Sequence[ImageRecord], cfg: Config):
        self.records = records
        self.scales = list(cfg.test.scales)
        self.max_size = cfg.test.max_size
        self.convention = resolve_input_convention(cfg)  # the one training used

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> PyramidImage:
        record = self.records[index]
        image = load_image(record)
        levels, scales = [], []
        for target in self.scales:
            tensor, scale = prepare_image(image, target, self.max_size, self.convention)
            levels.append(tensor)
            scales.append(scale)
        proposals = torch.as_tensor(np.asarray(record.proposals, np.float32).reshape(-1, 4))
        return PyramidImage(index, levels, scales, record.height, record.width, proposals)


def _collate(items: list[PyramidImage]) -> list[PyramidImage]:
    return items


def image_batches(records: Sequence[ImageRecord], cfg: Config) -> torch.utils.data.DataLoader:
    """Batches of `test.batch_images` PyramidImages, prepared by `dataset.num_workers` workers."""
    batch = cfg.test.batch_images
    workers = min(cfg.dataset.num_workers, max(1, -(-len(records) // batch)))
    return torch.utils.data.DataLoader(
        PyramidImages(records, cfg),
        batch_size=batch,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        generator=torch.Generator().manual_seed(0),  # never draw from the trainer's RNG stream
    )


def assign_levels(boxes: torch.Tensor, scales: torch.Tensor, canonical_size: int) -> torch.Tensor:
    """Pyramid level of each box (R, 4): its scaled area closest to canonical_size^2.

    scales: the levels' resize factors, (L,) for all boxes or (R, L) per box.
    """
    if scales.shape[-1] == 1:
        return torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
    areas = (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
    scaled = areas[:, None] * scales**2
    return (scaled - float(canonical_size) ** 2).abs().argmin(dim=1)


class PyramidFeatures:
    """Conv features of a batch at every test scale; scores any boxes in original coordinates.

    Computed once per batch, so iterative regression re-scores boxes without re-running the trunk.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        batch: Sequence[PyramidImage],
        device: torch.device,
        canonical_size: int = 224,
    ):
        self.model = model
        self.device = device
        self.canonical_size = canonical_size
        num_levels = len(batch[0].levels)
        self.scales = torch.tensor([img.scales for img in batch], device=device)  # (N, L)
        self.features = [
            model.features(pad_images([img.levels[lvl] for img in batch]).to(device))
            for lvl in range(num_levels)
        ]

    def score(self, boxes: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (R, K+1) and normalised deltas (R, 4(K+1)) of per-image boxes, in order."""
        image_idx = torch.cat(
            [torch.full((len(b),), i, device=self.device) for i, b in enumerate(boxes)]
        ).long()
        flat = torch.cat([b.to(self.device) for b in boxes]).float()
        levels = assign_levels(flat, self.scales[image_idx], self.canonical_size)
        k1 = self.model.num_classes + 1
        logits = flat.new_zeros((len(flat), k1))
        deltas = flat.new_zeros((len(flat), 4 * k1))
        for lvl, feats in enumerate(self.features):
            rows = torch.nonzero(levels == lvl).flatten()
            for chunk in rows.split(MAX_ROIS_PER_POOL):
                if chunk.numel() == 0:
                    continue
                scale = self.scales[image_idx[chunk], lvl][:, None]
                rois = torch.cat([image_idx[chunk, None].float(), flat[chunk] * scale], dim=1)
                chunk_logits, chunk_deltas = self.model.head(self.model.pool(feats, rois))
                logits[chunk] = chunk_logits.float()
                deltas[chunk] = chunk_deltas.float()
        return logits, deltas
