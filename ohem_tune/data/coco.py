"""COCO JSON loader through pycocotools: contiguous labels, original image ids, crowd kept aside.

COCO boxes [x, y, w, h] become inclusive (x, y, x + w - 1, y + h - 1). Category ids map to labels
1..K in increasing id order (`DetectionDataset.category_ids[label - 1]` is the original id).
Crowd regions stay in the records (`iscrowd`) but are never training ground truth; annotations
with `"difficult": 1` or `"ignore": 1` (the synthetic set writes them) set `difficult`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from ohem_tune.data.records import DetectionDataset, ImageRecord
from ohem_tune.data.voc import _warn_counts
from ohem_tune.errors import DataError

log = logging.getLogger(__name__)


def _read_coco(json_path: Path):
    from pycocotools.coco import COCO

    if not json_path.is_file():
        raise DataError(f"{json_path}: COCO annotation file not found; set dataset.coco_*_json")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            return COCO(str(json_path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{json_path}: not valid JSON ({exc}); re-export the file") from None
    except (KeyError, TypeError, AssertionError) as exc:
        raise DataError(
            f"{json_path}: not a COCO instances file (missing {exc}); it needs images, "
            "annotations and categories"
        ) from None


def load_coco(
    json_path: str | Path,
    image_root: str | Path,
    skip_empty: bool = False,
    name: str | None = None,
) -> DetectionDataset:
    """Read a COCO instances JSON into records (no proposals yet), images under image_root."""
    json_path, image_root = Path(json_path), Path(image_root)
    if not image_root.is_dir():
        raise DataError(f"{image_root}: image directory not found; set dataset.root")
    coco = _read_coco(json_path)
    cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
    if not cats:
        raise DataError(f"{json_path}: no categories; a COCO instances file lists its categories")
    cat_to_label = {c["id"]: i + 1 for i, c in enumerate(cats)}
    stats = {"clipped_boxes": 0, "dropped_boxes": 0, "empty_skipped": 0}
    records: list[ImageRecord] = []
    for image_id in [img["id"] for img in coco.dataset["images"]]:
        info = coco.imgs[image_id]
        width, height = int(info.get("width", 0)), int(info.get("height", 0))
        if width <= 0 or height <= 0:
            raise DataError(
                f"{json_path}: image {image_id} has no width/height; add them to its images entry"
            )
        boxes, labels, difficult, crowd = [], [], [], []
        for ann in coco.imgToAnns.get(image_id, []):
            if ann["category_id"] not in cat_to_label:
                raise DataError(
                    f"{json_path}: annotation {ann.get('id')} has unknown category_id "
                    f"{ann['category_id']}; add it to categories or fix the annotation"
                )
            x, y, w, h = (float(v) for v in ann["bbox"])
            box = np.array([x, y, x + w - 1, y + h - 1], dtype=np.float32)
            clipped = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1])
            if not np.array_equal(clipped, box):
                stats["clipped_boxes"] += 1
            if w <= 0 or h <= 0 or clipped[2] < clipped[0] or clipped[3] < clipped[1]:
                stats["dropped_boxes"] += 1
                continue
            boxes.append(clipped)
            labels.append(cat_to_label[ann["category_id"]])
            difficult.append(bool(ann.get("difficult", 0) or ann.get("ignore", 0)))
            crowd.append(bool(ann.get("iscrowd", 0)))
        if skip_empty and not any(not c for c in crowd):
            stats["empty_skipped"] += 1
            continue
        records.append(
            ImageRecord(
                image_id=int(image_id),
                path=image_root / info["file_name"],
                width=width,
                height=height,
                boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                labels=np.array(labels, dtype=np.int64),
                difficult=np.array(difficult, dtype=bool),
                proposals=np.zeros((0, 4), dtype=np.float32),
                iscrowd=np.array(crowd, dtype=bool),
            )
        )
    _warn_counts(str(json_path), stats)
    if not records:
        raise DataError(f"{json_path}: no usable images")
    return DetectionDataset(
        name=name or f"coco:{json_path.stem}",
        class_names=[c["name"] for c in cats],
        records=records,
        category_ids=[c["id"] for c in cats],
        meta={"format": "coco", "json": str(json_path), "image_root": str(image_root), **stats},
    )
