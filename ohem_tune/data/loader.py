"""TrainLoader: Fast R-CNN minibatches of N images, reproducible per iteration for exact resume.

Batch i holds stream positions i*N .. i*N + N - 1; position p is image perm_e[p mod L] of epoch
e = p // L, where perm_e is a permutation seeded by (seed, e). Each image's training scale is drawn
from a generator seeded by (seed, i). So batch i depends only on (seed, i), and a loader started at
start_iter yields exactly what an uninterrupted one yields from there on.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ohem_tune.config import Config
from ohem_tune.data.records import DetectionDataset, ImageRecord, Minibatch
from ohem_tune.data.transforms import (
    InputConvention,
    load_image,
    pad_images,
    prepare_image,
    resolve_input_convention,
)
from ohem_tune.errors import DataError


class _LoadFailure:
    """A DataError raised inside a worker, carried back as a message (keeps it one line)."""

    def __init__(self, message: str) -> None:
        self.message = message


class MinibatchBuilder(Dataset):
    """Map-style dataset whose item i is the whole minibatch of iteration i."""

    def __init__(
        self,
        records: list[ImageRecord],
        ims_per_batch: int,
        scales: list[int],
        max_size: int,
        convention: InputConvention | tuple[float, float, float],
        seed: int,
        use_difficult: bool = False,
        size_divisibility: int = 1,
    ) -> None:
        if not records:
            raise DataError("training set is empty; check dataset.train_split and the annotations")
        self.records = records
        self.ims_per_batch = ims_per_batch
        self.scales = list(scales)
        self.max_size = max_size
        self.convention = convention
        self.seed = seed
        self.use_difficult = use_difficult
        self.size_divisibility = size_divisibility
        self._perm_cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:  # the stream is endless; DataLoader only needs a sampler
        return 2**62

    def epoch_permutation(self, epoch: int) -> np.ndarray:
        """The image order of one epoch, from (seed, epoch)."""
        perm = self._perm_cache.get(epoch)
        if perm is None:
            if len(self._perm_cache) >= 4:  # a batch spans at most two epochs
                self._perm_cache.clear()
            rng = np.random.default_rng([self.seed, epoch, 0x5EED])
            perm = self._perm_cache[epoch] = rng.permutation(len(self.records))
        return perm

    def indices(self, iteration: int) -> list[int]:
        """Record indices of the batch of `iteration`."""
        n, total = self.ims_per_batch, len(self.records)
        out = []
        for pos in range(iteration * n, iteration * n + n):
            epoch, offset = divmod(pos, total)
            out.append(int(self.epoch_permutation(epoch)[offset]))
        return out

    def __getitem__(self, iteration: int) -> Minibatch | _LoadFailure:
        try:
            return self.build(iteration)
        except DataError as exc:
            return _LoadFailure(str(exc))

    def build(self, iteration: int) -> Minibatch:
        """Load, resize, normalise and pad the images of `iteration`; RoIs stay in original
        pixels with each image's scale beside them."""
        idx = self.indices(iteration)
        rng = np.random.default_rng([self.seed, iteration, 0x5CA1E])
        targets = rng.choice(len(self.scales), size=len(idx))
        images, sizes, scales, rois, gt_boxes, gt_labels = [], [], [], [], [], []
        for record_index, target in zip(idx, targets, strict=True):
            record = self.records[record_index]
            image, scale = prepare_image(
                load_image(record), self.scales[target], self.max_size, self.convention
            )
            keep = record.training_gt_mask(self.use_difficult)
            boxes = torch.from_numpy(record.boxes[keep]).float()  # original pixels: matched
            props = torch.from_numpy(record.proposals).float()  # there, pooled at `scale`
            images.append(image)
            sizes.append((int(image.shape[1]), int(image.shape[2])))
            scales.append(scale)
            rois.append(torch.cat([boxes, props]).reshape(-1, 4))
            gt_boxes.append(boxes.reshape(-1, 4))
            gt_labels.append(torch.from_numpy(record.labels[keep]).long())
        return Minibatch(
            images=pad_images(images, self.size_divisibility),
            image_sizes=sizes,
            scales=scales,
            rois=rois,
            gt_boxes=gt_boxes,
            gt_labels=gt_labels,
            record_indices=idx,
        )


def _identity(batch):
    return batch


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers resize small images; extra threads only oversubscribe


class TrainLoader:
    """Endless iterator of training Minibatches from iteration start_iter on (see module doc).

    `size_divisibility` > 1 pads each batch's image tensor (bottom/right, zeros) to a multiple
    of it, so cuDNN autotuning sees few shapes; boxes and RoIs are unchanged.
    """

    def __init__(
        self,
        dataset: DetectionDataset,
        cfg: Config,
        seed: int,
        start_iter: int = 0,
        size_divisibility: int = 1,
    ) -> None:
        self.dataset = dataset
        self.builder = MinibatchBuilder(
            dataset.records,
            cfg.solver.ims_per_batch,
            cfg.input.scales,
            cfg.input.max_size,
            resolve_input_convention(cfg),
            seed,
            cfg.dataset.use_difficult,
            size_divisibility,
        )
        self.num_workers = cfg.dataset.num_workers
        self.pin_memory = torch.cuda.is_available() and cfg.train.device != "cpu"
        self.iteration = start_iter  # the iteration the next batch belongs to
        self._iterator: Iterator | None = None

    def _start(self) -> Iterator:
        """A DataLoader over iterations self.iteration, self.iteration + 1, ..."""
        loader = DataLoader(
            self.builder,
            batch_size=None,
            sampler=itertools.count(self.iteration),
            num_workers=self.num_workers,
            collate_fn=_identity,
            pin_memory=self.pin_memory,
            worker_init_fn=_worker_init if self.num_workers else None,
            prefetch_factor=4 if self.num_workers else None,
        )
        return iter(loader)

    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> Minibatch:
        if self._iterator is None:
            self._iterator = self._start()
        batch = next(self._iterator)
        if isinstance(batch, _LoadFailure):
            self.close()  # a retry restarts at this same iteration
            raise DataError(f"{batch.message} (while loading iteration {self.iteration})")
        self.iteration += 1
        return batch

    def batch(self, iteration: int) -> Minibatch:
        """The batch of any iteration, built in this process (does not move the stream)."""
        return self.builder.build(iteration)

    def close(self) -> None:
        """Stop the worker processes; a later next() restarts them at self.iteration."""
        iterator, self._iterator = self._iterator, None
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def __enter__(self) -> TrainLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
