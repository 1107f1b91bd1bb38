"""build_dataset: config -> DetectionDataset (synthetic via its cache, VOC, COCO) with proposals."""

from __future__ import annotations

import logging
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
from ohem_tune.data.synthetic import TEST_SPLIT, TRAIN_SPLIT, ensure_synthetic, make_spec
from ohem_tune.data.voc import load_voc
from ohem_tune.errors import DataError

log = logging.getLogger(__name__)


def synthetic_root(cfg: Config) -> Path:
    """The synthetic set's directory in the cache (generated on first use)."""
    syn = cfg.dataset.synthetic
    spec = make_spec(syn.preset, syn.seed, syn.num_train, syn.num_test, syn.image_size)
    return ensure_synthetic(spec, syn.cache_dir)


def build_dataset(cfg: Config, split: Literal["train", "test"]) -> DetectionDataset:
    """The train or test split of cfg.dataset with validated proposals (train: + flipped copies)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    ds = cfg.dataset
    train = split == "train"
    if ds.format == "synthetic":
        root = synthetic_root(cfg)
        name = TRAIN_SPLIT if train else TEST_SPLIT
        dataset = load_voc(root, name, skip_empty=train, name=f"synthetic:{root.name}:{name}")
        default_proposals: Path | None = root / "proposals" / f"{name}.npz"
    elif ds.format == "voc":
        name = ds.train_split if train else ds.test_split
        dataset = load_voc(ds.root, name, ds.class_names, skip_empty=train)
        default_proposals = None
    else:
        json_path = _under_root(ds.root, ds.coco_train_json if train else ds.coco_test_json)
        images = _under_root(ds.root, ds.coco_train_images if train else ds.coco_test_images)
        dataset = load_coco(json_path, images or ds.root, skip_empty=train)
        default_proposals = None

    prop = ds.proposals
    file = _under_root(ds.root, prop.train_file if train else prop.test_file) or default_proposals
    if file is not None:
        attach_proposals(dataset, read_proposals(file), file, **_proposal_filters(prop))
    elif prop.generator == "selective_search":
        from ohem_tune.data.selective_search import selective_search_proposals

        source = f"selective search ({prop.cache_dir})"
        boxes = selective_search_proposals(dataset, prop.cache_dir)
        attach_proposals(dataset, boxes, source, **_proposal_filters(prop))
    elif prop.generator == "synthetic":
        field = "train_file" if train else "test_file"
        raise DataError(
            f"dataset.proposals.{field}: {ds.format} data has no built-in proposals; give a "
            "proposals file (.mat, .pkl, .npz or .json) or set dataset.proposals.generator to "
            "selective_search or none"
        )
    else:
        dataset.meta["proposals_source"] = "none"
    if train and cfg.input.flip:
        dataset = with_flipped(dataset)
    dataset.meta["split"] = split
    return dataset


def _proposal_filters(prop: ProposalConfig) -> dict[str, Any]:
    """attach_proposals' filter arguments from dataset.proposals."""
    return {
        "min_size": prop.min_size,
        "max_per_image": prop.max_per_image,
        "unique": prop.unique_boxes,
        "min_size_rule": prop.min_size_rule,
    }


def _under_root(root: Path | None, path: Path | None) -> Path | None:
    if path is None:
        return None
    return path if path.is_absolute() or root is None else Path(root) / path


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
