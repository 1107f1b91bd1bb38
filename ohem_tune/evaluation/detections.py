"""Detections as a flat table (one row per box) and its validation against a dataset.

Inference produces per-image, per-class arrays (Fast R-CNN's `all_boxes` transposed); evaluators
and files use the flat table. Boxes are inclusive pixel coordinates in the original image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ohem_tune.data.records import DetectionDataset
from ohem_tune.errors import EvaluationError

if TYPE_CHECKING:
    import pandas as pd

PerImageDetections = list[list[np.ndarray]]  # [image][class k] -> (D, 5) x1, y1, x2, y2, score
COLUMNS = ("image_id", "label", "class_name", "x1", "y1", "x2", "y2", "score")


@dataclass
class Detections:
    """One row per detected box: the image it belongs to, its label (1..K), box and score."""

    image_ids: np.ndarray  # (D,) the dataset's image ids (str or int)
    labels: np.ndarray  # (D,) int64 in 1..K
    boxes: np.ndarray  # (D, 4) float64, inclusive pixel coords in the original image
    scores: np.ndarray  # (D,) float64

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls) -> Detections:
        """A table with no rows."""
        return cls(np.empty(0, object), np.empty(0, np.int64), np.empty((0, 4)), np.empty(0))

    @classmethod
    def from_per_image(
        cls, per_image: Sequence[Sequence[np.ndarray]], dataset: DetectionDataset
    ) -> Detections:
        """Flatten `per_image[i][k]` ((D, 5) arrays for record i, label k + 1) into a table."""
        if len(per_image) != len(dataset.records):
            raise EvaluationError(
                f"detections: {len(per_image)} images of detections for a dataset of "
                f"{len(dataset.records)} images; pass one entry per record, in record order"
            )
        ids, labels, rows = [], [], []
        for record, per_class in zip(dataset.records, per_image, strict=True):
            if len(per_class) != dataset.num_classes:
                raise EvaluationError(
                    f"detections for image {record.image_id!r}: {len(per_class)} class arrays for "
                    f"{dataset.num_classes} classes; pass one (D, 5) array per class"
                )
            for k, dets in enumerate(per_class):
                dets = np.asarray(dets, dtype=np.float64)
                if dets.size == 0:
                    continue
                if dets.ndim != 2 or dets.shape[1] != 5:
                    raise EvaluationError(
                        f"detections for image {record.image_id!r}, class "
                        f"{dataset.class_names[k]!r}: shape {dets.shape}; expected (D, 5) rows of "
                        "x1, y1, x2, y2, score"
                    )
                rows.append(dets)
                ids.append(np.full(len(dets), record.image_id, dtype=object))
                labels.append(np.full(len(dets), k + 1, dtype=np.int64))
        if not rows:
            return cls.empty()
        table = np.concatenate(rows)
        return cls(np.concatenate(ids), np.concatenate(labels), table[:, :4], table[:, 4])

    def to_per_image(self, dataset: DetectionDataset) -> PerImageDetections:
        """The inverse of `from_per_image` (validates first)."""
        image_index = validate_detections(self, dataset)
        out: PerImageDetections = [
            [np.zeros((0, 5), np.float32) for _ in dataset.class_names] for _ in dataset.records
        ]
        order = np.lexsort((self.labels, image_index))
        table = np.concatenate([self.boxes, self.scores[:, None]], axis=1)[order].astype(np.float32)
        keys = image_index[order] * (dataset.num_classes + 1) + self.labels[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else []
        bounds = list(starts) + [len(keys)]
        for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
            i, label = divmod(int(keys[begin]), dataset.num_classes + 1)
            out[i][label - 1] = table[begin:end]
        return out

    def to_frame(self, class_names: Sequence[str]) -> pd.DataFrame:
        """A pandas DataFrame with COLUMNS (what `ohem-tune eval` writes as Parquet)."""
        import pandas as pd

        names = np.asarray(list(class_names), dtype=object)
        bad = (self.labels < 1) | (self.labels > len(names))
        if bad.any():
            raise EvaluationError(
                f"detections: label {int(self.labels[bad][0])} outside 1..{len(names)}"
            )
        return pd.DataFrame(
            {
                "image_id": self.image_ids,
                "label": self.labels.astype(np.int64),
                "class_name": names[self.labels - 1] if len(self) else np.empty(0, object),
                "x1": self.boxes[:, 0],
                "y1": self.boxes[:, 1],
                "x2": self.boxes[:, 2],
                "y2": self.boxes[:, 3],
                "score": self.scores,
            }
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str = "detections") -> Detections:
        """Read a table with at least image_id, label, x1, y1, x2, y2, score columns."""
        missing = [c for c in COLUMNS if c != "class_name" and c not in frame.columns]
        if missing:
            raise EvaluationError(
                f"{source}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}"
            )
        return cls(
            image_ids=frame["image_id"].to_numpy(dtype=object),
            labels=frame["label"].to_numpy(dtype=np.int64),
            boxes=frame[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64),
            scores=frame["score"].to_numpy(dtype=np.float64),
        )


def image_index_of(dataset: DetectionDataset, image_ids: np.ndarray) -> np.ndarray:
    """Record index of each image id (-1 where the id is not in the dataset)."""
    import pandas as pd

    lookup = {r.image_id: i for i, r in enumerate(dataset.records)}
    if len(lookup) != len(dataset.records):
        seen: set = set()
        dup = next(
            r.image_id for r in dataset.records if r.image_id in seen or seen.add(r.image_id)
        )
        raise EvaluationError(
            f"dataset {dataset.name!r}: image id {dup!r} appears twice (flipped copies?); "
            "evaluate on a split without duplicates"
        )
    codes, uniques = pd.factorize(np.asarray(image_ids, dtype=object))  # hashing, no sort
    index = np.array([lookup.get(u, -1) for u in uniques], dtype=np.int64)
    if (index < 0).any():  # ids read back from text files: "17" for 17
        by_text = {str(k): i for k, i in lookup.items()}
        index = np.array(
            [i if i >= 0 else by_text.get(str(u), -1) for u, i in zip(uniques, index, strict=True)],
            dtype=np.int64,
        )
    return index[codes] if len(codes) else np.empty(0, np.int64)


def validate_detections(
    dets: Detections, dataset: DetectionDataset, source: str = "detections"
) -> np.ndarray:
    """Check shapes, finiteness, box order, labels and image ids; return each row's record index.

    Raises EvaluationError naming the first bad row, so a bad input never becomes a wrong number.
    """
    n = len(dets.labels)
    if dets.boxes.shape != (n, 4) or dets.scores.shape != (n,) or dets.image_ids.shape != (n,):
        raise EvaluationError(
            f"{source}: inconsistent columns (boxes {dets.boxes.shape}, scores "
            f"{dets.scores.shape}, image ids {dets.image_ids.shape}, labels ({n},)); "
            "expected (D, 4), (D,), (D,), (D,)"
        )
    if n == 0:
        return np.empty(0, np.int64)

    def first(mask: np.ndarray) -> str:
        i = int(np.flatnonzero(mask)[0])
        return (
            f"{int(mask.sum())} row(s), first: image {dets.image_ids[i]!r}, label "
            f"{dets.labels[i]}, box {dets.boxes[i].tolist()}, score {dets.scores[i]}"
        )

    finite = np.isfinite(dets.boxes).all(axis=1) & np.isfinite(dets.scores)
    if not finite.all():
        raise EvaluationError(
            f"{source}: NaN/inf box or score in {first(~finite)}; drop or fix them (a diverged "
            "model produces these)"
        )
    inverted = (dets.boxes[:, 2] < dets.boxes[:, 0]) | (dets.boxes[:, 3] < dets.boxes[:, 1])
    if inverted.any():
        raise EvaluationError(
            f"{source}: inverted box (x2 < x1 or y2 < y1) in {first(inverted)}; boxes are "
            "inclusive x1, y1, x2, y2"
        )
    unknown = (dets.labels < 1) | (dets.labels > dataset.num_classes)
    if unknown.any():
        raise EvaluationError(
            f"{source}: unknown class id in {first(unknown)}; labels are 1..{dataset.num_classes} "
            f"({', '.join(dataset.class_names[:5])}{', ...' if dataset.num_classes > 5 else ''})"
        )
    image_index = image_index_of(dataset, dets.image_ids)
    absent = image_index < 0
    if absent.any():
        raise EvaluationError(
            f"{source}: image id absent from dataset {dataset.name!r} in {first(absent)}; "
            "evaluate against the split the detections were made on"
        )
    return image_index
