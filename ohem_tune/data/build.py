"""build_dataset: config -> DetectionDataset (synthetic via its cache, VOC, COCO) with proposals."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ohem_tune.config import Config
from ohem_tune.config.dataset import ProposalConfig
from ohem_tune.data.boxes import flip_boxes
from ohem_tune.data.coco import load_coco
from ohem_tune.data.proposals import attach_proposals, read_proposals
from ohem_tune.data.records import DetectionDataset, ImageRecord
from ohem_tune.data.synthetic import (
    TEST_SPLIT,
    TRAIN_SPLIT,
    VAL_SPLIT,
    ensure_synthetic,
    ensure_synthetic_val,
    make_spec,
)
from ohem_tune.data.voc import load_voc, read_split
from ohem_tune.errors import DataError

log = logging.getLogger(__name__)


Split = Literal["train", "test", "val"]


def synthetic_root(cfg: Config, val: bool = False) -> Path:
    """The synthetic set's directory in the cache (generated on first use; val: with its val
    split, added to an existing cache on first use)."""
    syn = cfg.dataset.synthetic
    spec = make_spec(syn.preset, syn.seed, syn.num_train, syn.num_test, syn.image_size)
    if val:
        return ensure_synthetic_val(spec, syn.cache_dir)
    return ensure_synthetic(spec, syn.cache_dir)


def build_dataset(cfg: Config, split: Split, for_training: bool = False) -> DetectionDataset:
    """The train, test or val split of cfg.dataset with validated proposals (train: + flipped
    copies). val is dataset.val_split (the synthetic set's own val split); its proposals come
    from proposals.train_file (VOC07's trainval proposals cover val), else the built-in ones.
    `for_training` (the Trainer's train split) also drops the images no minibatch could use
    (drop_unusable_images); evaluating or inspecting the train split keeps them."""
    if split not in ("train", "test", "val"):
        raise ValueError(f"split must be 'train', 'test' or 'val', got {split!r}")
    ds = cfg.dataset
    train = split == "train"
    if ds.format == "synthetic":
        root = synthetic_root(cfg, val=split == "val")
        name = {"train": TRAIN_SPLIT, "test": TEST_SPLIT, "val": VAL_SPLIT}[split]
        dataset = load_voc(root, name, skip_empty=train, name=f"synthetic:{root.name}:{name}")
        default_proposals: Path | None = root / "proposals" / f"{name}.npz"
    elif ds.format == "voc":
        name = {"train": ds.train_split, "test": ds.test_split, "val": ds.val_split}[split]
        if split == "val":
            _check_val_disjoint(ds.root, ds.train_split, ds.val_split)
        dataset = load_voc(ds.root, name, ds.class_names, skip_empty=train)
        default_proposals = None
    elif split == "val":
        raise DataError(
            f"dataset.val_split: '{ds.val_split}' is not supported for COCO data; a search on "
            "COCO selects on its test json (set train.eval_split: test and "
            "search.allow_test_selection: true), or convert the val set to a VOC devkit"
        )
    else:
        json_path = _under_root(ds.root, ds.coco_train_json if train else ds.coco_test_json)
        images = _under_root(ds.root, ds.coco_train_images if train else ds.coco_test_images)
        dataset = load_coco(json_path, images or ds.root, skip_empty=train)
        default_proposals = None

    prop = ds.proposals
    given = prop.test_file if split == "test" else prop.train_file
    file = _under_root(ds.root, given) or default_proposals
    if file is not None:
        attach_proposals(dataset, read_proposals(file), file, **_proposal_filters(prop))
    elif prop.generator == "selective_search":
        from ohem_tune.data.selective_search import selective_search_proposals

        source = f"selective search ({prop.cache_dir})"
        boxes = selective_search_proposals(dataset, prop.cache_dir)
        attach_proposals(dataset, boxes, source, **_proposal_filters(prop))
    elif prop.generator == "synthetic":
        field = "test_file" if split == "test" else "train_file"
        raise DataError(
            f"dataset.proposals.{field}: {ds.format} data has no built-in proposals; give a "
            "proposals file (.mat, .pkl, .npz or .json) or set dataset.proposals.generator to "
            "selective_search or none"
        )
    else:
        dataset.meta["proposals_source"] = "none"
    if train and for_training:
        dataset = drop_unusable_images(
            dataset, cfg.sampler.bg_lo, cfg.sampler.bg_hi, cfg.dataset.use_difficult
        )
    if train and cfg.input.flip:
        dataset = with_flipped(dataset)
    dataset.meta["split"] = split
    return dataset


def drop_unusable_images(
    dataset: DetectionDataset, bg_lo: float, bg_hi: float, use_difficult: bool = False
) -> DetectionDataset:
    """Drop training images no minibatch could take a RoI from, as the authors' filter_roidb
    (fast-rcnn lib/fast_rcnn/train.py). The ground truth is among the RoIs, so an image with a
    training object always has a foreground RoI; one without (all its objects difficult) has
    every RoI at IoU 0, a background only where bg_lo <= 0 < bg_hi."""
    if bg_lo <= 0 < bg_hi:
        return dataset
    kept = [r for r in dataset.records if r.training_gt_mask(use_difficult).any()]
    dropped = len(dataset.records) - len(kept)
    if not dropped:
        return dataset
    log.warning(
        "%s: %d training image(s) dropped: no training object (all difficult), so no RoI in "
        "sampler.bg_lo %g .. bg_hi %g either (as the authors' filter_roidb)",
        dataset.name, dropped, bg_lo, bg_hi,
    )  # fmt: skip
    if not kept:
        raise DataError(
            f"{dataset.name}: no training image has a training object; check the annotations "
            "or set dataset.use_difficult: true"
        )
    return replace(dataset, records=kept, meta={**dataset.meta, "unusable_dropped": dropped})


def _check_val_disjoint(root: Path | None, train_split: str, val_split: str) -> None:
    """A val split that shares images with the train split measures nothing: refuse it."""
    assert root is not None
    shared = set(read_split(root, train_split)) & set(read_split(root, val_split))
    if shared:
        raise DataError(
            f"{Path(root) / 'ImageSets' / 'Main'}: dataset.val_split '{val_split}' shares "
            f"{len(shared)} images with dataset.train_split '{train_split}' (e.g. "
            f"{sorted(shared)[0]}); train on a split without them (VOC07: dataset.train_split: "
            "train, dataset.val_split: val)"
        )


def _proposal_filters(prop: ProposalConfig) -> dict[str, Any]:
    """attach_proposals' filter arguments from dataset.proposals."""
    return {
        "min_size": prop.min_size,
        "max_per_image": prop.max_per_image,
        "unique": prop.unique_boxes,
        "min_size_rule": prop.min_size_rule,
    }


def _under_root(root: Path | None, path: Path | None) -> Path | None:
    """`path` relative to dataset.root, its `..` taken lexically: with data/VOCdevkit a symlink
    (py-faster-rcnn's layout), root/../../selective_search_data stays under data/, not under the
    link's target as the filesystem would resolve it."""
    if path is None:
        return None
    return path if path.is_absolute() or root is None else Path(os.path.normpath(Path(root) / path))


def flip_record(record: ImageRecord) -> ImageRecord:
    """The horizontally mirrored record (boxes and proposals mirrored, flipped toggled)."""
    return replace(
        record,
        boxes=flip_boxes(record.boxes, record.width),
        proposals=flip_boxes(record.proposals, record.width),
        labels=record.labels.copy(),
        difficult=record.difficult.copy(),
        iscrowd=None if record.iscrowd is None else record.iscrowd.copy(),
        flipped=not record.flipped,
    )


def with_flipped(dataset: DetectionDataset) -> DetectionDataset:
    """The dataset followed by a mirrored copy of every record (Fast R-CNN's doubled set)."""
    return replace(
        dataset,
        records=dataset.records + [flip_record(r) for r in dataset.records],
        meta={**dataset.meta, "flipped_appended": len(dataset.records)},
    )


def proposal_stats(dataset: DetectionDataset) -> dict[str, float]:
    """Mean/min/max proposals per image."""
    counts = np.array([len(r.proposals) for r in dataset.records])
    return {"mean": float(counts.mean()), "min": int(counts.min()), "max": int(counts.max())}
