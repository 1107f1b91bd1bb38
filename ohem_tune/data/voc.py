"""Pascal VOC devkit loader: JPEGImages/, Annotations/*.xml, ImageSets/Main/<split>.txt.

VOC XML coordinates are 1-based inclusive; records are 0-based inclusive (x - 1 on load).
Class names come from the caller, else `classes.json` at the root, else VOC's 20 classes.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ohem_tune.data.records import DetectionDataset, ImageRecord
from ohem_tune.errors import DataError

log = logging.getLogger(__name__)

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

CLASSES_FILE = "classes.json"  # {"class_names": [...]} beside the data (the synthetic set has one)


def read_class_names(root: Path) -> list[str] | None:
    """The class list stored in root/classes.json, or None when there is none."""
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())["class_names"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(
            f'{path}: expected {{"class_names": [...]}} ({exc}); fix or delete the file'
        ) from None
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise DataError(f"{path}: class_names must be a non-empty list of distinct strings")
    return list(names)


def read_split(root: Path, split: str) -> list[str]:
    """Image ids listed in ImageSets/Main/<split>.txt (one per line, blank lines ignored)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: dataset root not found; set dataset.root to the VOC devkit year dir"
        )
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        found = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt"))[:8]
        hint = f" (found: {', '.join(found)})" if found else ""
        raise DataError(
            f"{path}: split file not found; set dataset.train_split/test_split to an existing "
            f"split{hint}"
        )
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _int_field(node: ET.Element, tag: str, xml_path: Path) -> float:
    text = node.findtext(tag)
    if text is None or not text.strip():
        raise DataError(f"{xml_path}: <{tag}> missing in <{node.tag}>; add it to the annotation")
    try:
        return float(text)
    except ValueError:
        raise DataError(
            f"{xml_path}: <{tag}> is {text!r}, not a number; fix the annotation"
        ) from None


def parse_voc_xml(
    xml_path: Path, class_to_label: dict[str, int], stats: dict[str, int]
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """(width, height, boxes (G,4) 0-based, labels (G,), difficult (G,)) of one annotation."""
    try:
        tree = ET.parse(xml_path)
    except FileNotFoundError:
        raise DataError(
            f"{xml_path}: annotation not found; add it or remove the image from the split list"
        ) from None
    except ET.ParseError as exc:
        raise DataError(f"{xml_path}: malformed XML ({exc}); fix or re-export the file") from None
    size = tree.find("size")
    if size is None:
        raise DataError(
            f"{xml_path}: no <size> (width/height); add <size><width>W</width><height>H</height>"
            "</size>"
        )
    width, height = (
        int(_int_field(size, "width", xml_path)),
        int(_int_field(size, "height", xml_path)),
    )
    if width <= 0 or height <= 0:
        raise DataError(f"{xml_path}: <size> is {width}x{height}; width and height must be > 0")
    boxes, labels, difficult = [], [], []
    for obj in tree.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_to_label:
            raise DataError(
                f"{xml_path}: unknown class {name!r}; add it to dataset.class_names (or "
                f"classes.json) or fix the name (known: {', '.join(class_to_label)})"
            )
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DataError(f"{xml_path}: object {name!r} has no <bndbox>; fix the annotation")
        x1, y1, x2, y2 = (
            _int_field(bnd, t, xml_path) - 1 for t in ("xmin", "ymin", "xmax", "ymax")
        )
        box = np.array([x1, y1, x2, y2], dtype=np.float32)
        clipped = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1])
        if not np.array_equal(clipped, box):
            stats["clipped_boxes"] += 1
        if clipped[2] < clipped[0] or clipped[3] < clipped[1]:
            stats["dropped_boxes"] += 1
            continue
        boxes.append(clipped)
        labels.append(class_to_label[name])
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
    return (
        width,
        height,
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
        np.array(difficult, dtype=bool),
    )


def load_voc(
    root: str | Path,
    split: str,
    class_names: Sequence[str] | None = None,
    skip_empty: bool = False,
    name: str | None = None,
) -> DetectionDataset:
    """Read a VOC split into records (no proposals yet); skip_empty drops images without objects."""
    root = Path(root)
    ids = read_split(root, split)
    names = list(class_names) if class_names else read_class_names(root) or list(VOC_CLASSES)
    class_to_label = {n: i + 1 for i, n in enumerate(names)}
    stats = {"clipped_boxes": 0, "dropped_boxes": 0, "empty_skipped": 0}
    records: list[ImageRecord] = []
    for image_id in ids:
        xml_path = root / "Annotations" / f"{image_id}.xml"
        width, height, boxes, labels, difficult = parse_voc_xml(xml_path, class_to_label, stats)
        if skip_empty and len(boxes) == 0:
            stats["empty_skipped"] += 1
            continue
        records.append(
            ImageRecord(
                image_id=image_id,
                path=root / "JPEGImages" / f"{image_id}.jpg",
                width=width,
                height=height,
                boxes=boxes,
                labels=labels,
                difficult=difficult,
                proposals=np.zeros((0, 4), dtype=np.float32),
                iscrowd=np.zeros(len(boxes), dtype=bool),
            )
        )
    _warn_counts(f"{root} split {split!r}", stats)
    if not records:
        raise DataError(f"{root}: split {split!r} has no usable images; check the split file")
    return DetectionDataset(
        name=name or f"voc:{root.name}:{split}",
        class_names=names,
        records=records,
        meta={"format": "voc", "root": str(root), "split": split, **stats},
    )


def _warn_counts(where: str, stats: dict[str, int]) -> None:
    if stats.get("clipped_boxes"):
        log.warning(
            "%s: clipped %d boxes that extended outside their image", where, stats["clipped_boxes"]
        )
    if stats.get("dropped_boxes"):
        log.warning(
            "%s: dropped %d boxes that lay entirely outside their image",
            where,
            stats["dropped_boxes"],
        )
    if stats.get("empty_skipped"):
        log.warning(
            "%s: skipped %d images without objects (no training ground truth)",
            where,
            stats["empty_skipped"],
        )
