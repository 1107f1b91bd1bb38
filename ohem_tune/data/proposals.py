"""Region proposals on disk: read, validate (clip / de-duplicate / drop, counted), attach.

Formats, told apart by suffix (boxes in original-image pixels; every reader returns the project's
0-based inclusive (x1, y1, x2, y2), best-ranked first):
- `.npz`: one array per image, key `str(image_id)`, shape (P, 4) float, 0-based inclusive
  (x1, y1, x2, y2), best-ranked first (truncation keeps the first `max_per_image`). Numeric keys
  also match integer ids regardless of leading zeros ("000201" serves COCO image 201).
- `.json` (COCO results style): a list of `{"image_id", "bbox": [x, y, w, h], "score"}`;
  per image sorted by descending score.
- `.mat` (fast-rcnn selective_search_data), `.pkl` / `.pickle` (Detectron, detectron2): see
  `ohem_tune.data.proposal_formats`.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ohem_tune.data.proposal_formats import read_fast_rcnn_mat, read_proposal_pickle
from ohem_tune.data.records import DetectionDataset
from ohem_tune.errors import DataError

log = logging.getLogger(__name__)


def save_proposals_npz(path: str | Path, proposals: Mapping[str | int, np.ndarray]) -> None:
    """Write {image_id: (P, 4) boxes} in the .npz format (float32, compressed)."""
    arrays = {str(k): np.asarray(v, dtype=np.float32).reshape(-1, 4) for k, v in proposals.items()}
    np.savez_compressed(path, **arrays)


MIN_SIZE_RULES = ("inclusive", "py_faster_rcnn")


def read_proposals(path: str | Path) -> dict[str, np.ndarray]:
    """{str(image_id): (P, 4) float32 0-based inclusive boxes} from any supported file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: proposals file not found; set dataset.proposals.*_file")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return read_fast_rcnn_mat(path)
    if suffix in (".pkl", ".pickle"):
        return read_proposal_pickle(path)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                out = {k: np.asarray(data[k], dtype=np.float32) for k in data.files}
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise DataError(f"{path}: unreadable .npz ({exc}); regenerate the proposals") from None
        for key, boxes in out.items():
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                if boxes.size == 0:
                    out[key] = boxes.reshape(0, 4)
                    continue
                raise DataError(
                    f"{path}: entry {key!r} has shape {boxes.shape}; expected (P, 4) boxes"
                )
        return out
    if suffix == ".json":
        return _read_coco_proposals(path)
    raise DataError(
        f"{path}: unknown proposals format {path.suffix!r}; use .mat, .pkl, .pickle, .npz or .json"
    )


def _read_coco_proposals(path: Path) -> dict[str, np.ndarray]:
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); regenerate the proposals") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of {{image_id, bbox, score}} entries")
    per_image: dict[str, list[tuple[float, list[float]]]] = defaultdict(list)
    for i, entry in enumerate(entries):
        try:
            x, y, w, h = (float(v) for v in entry["bbox"])
            per_image[str(entry["image_id"])].append((float(entry.get("score", 0.0)), [x, y, w, h]))
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{path}: entry {i} is not {{image_id, bbox: [x, y, w, h], score}}; fix the file"
            ) from None
    out = {}
    for key, items in per_image.items():
        items.sort(key=lambda item: -item[0])
        xywh = np.array([b for _, b in items], dtype=np.float32).reshape(-1, 4)
        out[key] = np.stack(
            [xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2] - 1, xywh[:, 1] + xywh[:, 3] - 1],
            axis=1,
        )
    return out


def unique_boxes(boxes: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Indices of the first occurrence of each box after rounding, in file order (the authors'
    ds_utils.unique_boxes; rows compared whole, so no hash collision at coordinates >= 1000)."""
    rounded = np.round(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale)
    _, index = np.unique(rounded, axis=0, return_index=True)
    return np.sort(index)


def small_box_mask(boxes: np.ndarray, min_size: float, rule: str = "inclusive") -> np.ndarray:
    """True for boxes big enough to keep. inclusive: x2 - x1 + 1 >= min_size and likewise for y;
    py_faster_rcnn: the authors' filter_small_boxes, x2 - x1 >= min_size and y2 - y1 > min_size."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    if rule == "inclusive":
        return (w + 1 >= min_size) & (h + 1 >= min_size)
    if rule == "py_faster_rcnn":
        return (w >= min_size) & (h > min_size)
    raise ValueError(f"min_size_rule must be one of {MIN_SIZE_RULES}, got {rule!r}")


def validate_proposals(
    boxes: np.ndarray,
    width: int,
    height: int,
    min_size: float = 1.0,
    max_per_image: int | None = None,
    unique: bool = False,
    min_size_rule: str = "inclusive",
) -> tuple[np.ndarray, dict[str, int]]:
    """Finite, clipped into the image, optionally de-duplicated, at least min_size wide and high
    (by min_size_rule), at most max_per_image (None: all), in file order."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    counts = {
        "non_finite": 0, "outside": 0, "clipped": 0, "duplicate": 0, "too_small": 0,
        "truncated": 0,
    }  # fmt: skip
    finite = np.isfinite(boxes).all(axis=1)
    counts["non_finite"] = int((~finite).sum())
    boxes = boxes[finite]
    inside = (boxes[:, 2] >= 0) & (boxes[:, 3] >= 0) & (boxes[:, 0] <= width - 1)
    inside &= (
        (boxes[:, 1] <= height - 1) & (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    )
    counts["outside"] = int((~inside).sum())
    boxes = boxes[inside]
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, width - 1)
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, height - 1)
    counts["clipped"] = int((clipped != boxes).any(axis=1).sum())
    if unique:
        keep = unique_boxes(clipped)
        counts["duplicate"] = len(clipped) - len(keep)
        clipped = clipped[keep]
    big = small_box_mask(clipped, min_size, min_size_rule)
    counts["too_small"] = int((~big).sum())
    clipped = clipped[big]
    if max_per_image is not None and len(clipped) > max_per_image:
        counts["truncated"] = len(clipped) - max_per_image
        clipped = clipped[:max_per_image]
    return np.ascontiguousarray(clipped), counts


def by_image_key(per_image: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The mapping with numeric keys also reachable without leading zeros ("000201" -> "201")."""
    lookup = dict(per_image)
    for key in per_image:
        if key.isdigit():
            lookup.setdefault(str(int(key)), per_image[key])
    return lookup


def attach_proposals(
    dataset: DetectionDataset,
    proposals: Mapping[str, np.ndarray],
    source: str | Path,
    min_size: float = 1.0,
    max_per_image: int | None = None,
    unique: bool = False,
    min_size_rule: str = "inclusive",
) -> DetectionDataset:
    """Validate and set each record's proposals in place; every image must have an entry."""
    totals: dict[str, int] = defaultdict(int)
    lookup = by_image_key(proposals)
    for record in dataset.records:
        key = str(record.image_id)
        if key not in lookup:
            raise DataError(
                f"{source}: no proposals for image {record.image_id!r}; regenerate the proposals "
                "for this split or remove the image from it"
            )
        boxes, counts = validate_proposals(
            lookup[key], record.width, record.height, min_size, max_per_image, unique,
            min_size_rule,
        )  # fmt: skip
        record.proposals = boxes
        for name, value in counts.items():
            totals[name] += value
    dropped = totals["non_finite"] + totals["outside"] + totals["too_small"]
    if dropped or totals["clipped"]:
        log.warning(
            "%s: clipped %d proposals to their image; dropped %d (%d non-finite, %d outside or "
            "degenerate, %d smaller than min_size %.3g by the %s rule)",
            source, totals["clipped"], dropped, totals["non_finite"], totals["outside"],
            totals["too_small"], min_size, min_size_rule,
        )  # fmt: skip
    if totals["duplicate"] or totals["truncated"]:
        log.info(
            "%s: removed %d duplicate proposals (unique_boxes); truncated %d beyond "
            "max_per_image %s",
            source, totals["duplicate"], totals["truncated"], max_per_image,
        )  # fmt: skip
    dataset.meta["proposal_counts"] = dict(totals)
    dataset.meta["proposals_source"] = str(source)
    return dataset
