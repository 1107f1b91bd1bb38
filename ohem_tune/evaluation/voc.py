"""PASCAL VOC detection AP, vectorised: VOC2007 11-point and VOC2010+ all-points (area) AP.

The rules are the devkit's (as ported in py-faster-rcnn's `voc_eval.py`): per class, detections in
decreasing score order are matched to the ground-truth box of highest IoU in their image; IoU
must be strictly > 0.5 (areas with the +1 pixel convention); the first detection of a GT box is a
true positive, later ones are false positives; a match to a 'difficult' box (or a COCO crowd
region) counts as neither, and those boxes are not in the positives count. Ties in score keep the
input order (stable sort).

Where the devkit divides by zero we define: a class with no (non-difficult) GT has AP NaN and is
left out of the mean; a class with GT but no detections has AP 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ohem_tune.data.records import DetectionDataset, ImageRecord
from ohem_tune.evaluation.detections import Detections, validate_detections

_RECALL_POINTS_07 = np.arange(0.0, 1.1, 0.1)  # the devkit's 11 thresholds, float values included


@dataclass
class VocResult:
    """Per-class AP (11-point and area), positives and detection counts, and the means."""

    class_names: list[str]
    ap_11point: np.ndarray  # (K,) NaN for classes without GT
    ap_area: np.ndarray  # (K,)
    num_positives: np.ndarray  # (K,) non-difficult GT boxes
    num_detections: np.ndarray  # (K,)

    @property
    def map_11point(self) -> float:
        """Mean VOC07 11-point AP over classes that have GT (NaN if none has)."""
        return _nanmean(self.ap_11point)

    @property
    def map_area(self) -> float:
        """Mean VOC2010+ all-points AP over classes that have GT (NaN if none has)."""
        return _nanmean(self.ap_area)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP from a precision/recall curve in score order (the devkit's `VOCap` and 11-point rule)."""
    if use_07_metric:
        # max precision at recall >= t, for the 11 thresholds (0 if recall never reaches t)
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision
        first = np.searchsorted(recall, _RECALL_POINTS_07, side="left")
        reached = first < recall.size
        points = np.zeros(len(_RECALL_POINTS_07))
        points[reached] = envelope[first[reached]]
        return float(points.sum() / 11.0)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def _ignored(record: ImageRecord) -> np.ndarray:
    """(G,) bool: GT that counts as neither TP nor FP (difficult, and COCO crowd regions)."""
    ignored = np.asarray(record.difficult, bool)
    if record.iscrowd is not None:
        ignored = ignored | np.asarray(record.iscrowd, bool)
    return ignored


def _iou_inclusive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (P, 4) box pairs with the +1 pixel convention."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1.0
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1.0
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    return inter / (area_a + area_b - inter)


def match_class(
    det_image: np.ndarray,
    det_boxes: np.ndarray,
    gt_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    num_images: int,
    iou_thresh: float = 0.5,
    det_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP flags of one class's detections, already in decreasing score order.

    With det_rows, detection i's box is det_boxes[det_rows[i]] (only boxes that meet a GT box
    of their image are gathered).

    Each detection is paired with every GT box of its image (no per-detection loop); its best GT
    is the first of maximal IoU, like the devkit's argmax, and does not depend on earlier matches,
    so "the first detection of each GT wins" is a first-occurrence query.
    """
    num_dets = len(det_image)
    tp = np.zeros(num_dets, dtype=bool)
    fp = np.ones(num_dets, dtype=bool)
    if num_dets == 0 or len(gt_image) == 0:
        return tp, fp
    gt_order = np.argsort(gt_image, kind="stable")
    gt_image, gt_boxes = gt_image[gt_order], gt_boxes[gt_order]
    gt_difficult = gt_difficult[gt_order]
    gt_count = np.bincount(gt_image, minlength=num_images)
    gt_start = np.concatenate(([0], np.cumsum(gt_count)[:-1]))

    pairs_per_det = gt_count[det_image]
    has_gt = pairs_per_det > 0
    det_idx = np.flatnonzero(has_gt)
    if det_idx.size == 0:
        return tp, fp
    counts = pairs_per_det[det_idx]
    seg_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    num_pairs = int(counts.sum())
    pair_det = np.repeat(np.arange(det_idx.size), counts)
    pair_gt = np.repeat(gt_start[det_image[det_idx]] - seg_start, counts) + np.arange(num_pairs)
    box_rows = det_idx if det_rows is None else det_rows[det_idx]
    iou = _iou_inclusive(det_boxes[box_rows][pair_det], gt_boxes[pair_gt])

    best_iou = np.maximum.reduceat(iou, seg_start)
    first_best = np.where(iou == best_iou[pair_det], np.arange(num_pairs), num_pairs)
    best_gt = pair_gt[np.minimum.reduceat(first_best, seg_start)]

    over = best_iou > iou_thresh
    ignored = over & gt_difficult[best_gt]
    candidate = np.flatnonzero(over & ~ignored)  # in score order
    _, first_hit = np.unique(best_gt[candidate], return_index=True)
    tp[det_idx[candidate[first_hit]]] = True
    fp[det_idx[ignored]] = False
    fp[tp] = False
    return tp, fp


def _class_score_order(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One sort for all classes: by label, then decreasing score, ties in input order.

    Equivalent to a stable two-key sort, done as one unstable (SIMD) sort of a tie-free int64 key
    (label, dense score rank, row), which is ~2x faster on 500k rows.
    """
    n = len(scores)
    if n == 0:
        return np.empty(0, np.int64)
    by_score = np.argsort(-scores)
    ranked = scores[by_score]
    dense = np.cumsum(np.r_[False, ranked[1:] != ranked[:-1]])
    num_ranks = int(dense[-1]) + 1
    if (int(labels.max()) + 1) * num_ranks * n >= 2**62:  # key would overflow: two stable sorts
        by_score = np.argsort(-scores, kind="stable")
        return by_score[np.argsort(labels[by_score], kind="stable")]
    rank = np.empty(n, np.int64)
    rank[by_score] = dense
    key = (labels.astype(np.int64) * num_ranks + rank) * n + np.arange(n)
    return np.argsort(key)


def voc_eval(
    dets: Detections,
    dataset: DetectionDataset,
    iou_thresh: float = 0.5,
    source: str = "detections",
) -> VocResult:
    """VOC AP of every class of `dataset` for a table of detections on its images."""
    image_index = validate_detections(dets, dataset, source)
    num_images, num_classes = len(dataset.records), dataset.num_classes

    gt_counts = [len(r.labels) for r in dataset.records]
    gt_image = np.repeat(np.arange(num_images), gt_counts)
    cat = np.concatenate
    gt_boxes = cat([r.boxes for r in dataset.records]) if num_images else np.zeros((0, 4))
    gt_boxes = gt_boxes.reshape(-1, 4).astype(np.float64)
    gt_labels = cat([r.labels for r in dataset.records]).astype(np.int64) if num_images else []
    gt_difficult = cat([_ignored(r) for r in dataset.records]) if num_images else []
    gt_labels, gt_difficult = np.asarray(gt_labels, np.int64), np.asarray(gt_difficult, bool)

    order = _class_score_order(dets.labels, dets.scores)
    labels_sorted = dets.labels[order]
    bounds = np.searchsorted(labels_sorted, np.arange(1, num_classes + 2))

    ap07 = np.full(num_classes, np.nan)
    ap10 = np.full(num_classes, np.nan)
    npos = np.zeros(num_classes, dtype=np.int64)
    ndet = np.diff(bounds).astype(np.int64)
    for k in range(num_classes):
        in_class = gt_labels == k + 1
        npos[k] = int((in_class & ~gt_difficult).sum())
        rows = order[bounds[k] : bounds[k + 1]]
        tp, fp = match_class(
            image_index[rows],
            dets.boxes,
            gt_image[in_class],
            gt_boxes[in_class],
            gt_difficult[in_class],
            num_images,
            iou_thresh,
            det_rows=rows,
        )
        if npos[k] == 0:
            continue  # AP undefined without positives (NaN, left out of the mean)
        tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
        recall = tp_cum / npos[k]
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        ap07[k] = voc_ap(recall, precision, use_07_metric=True)
        ap10[k] = voc_ap(recall, precision, use_07_metric=False)
    return VocResult(list(dataset.class_names), ap07, ap10, npos, ndet)
