"""The devkit's per-detection VOC loop (py-faster-rcnn's voc_eval), an oracle for the tests."""

from __future__ import annotations

import numpy as np

from ohem_tune.data.records import DetectionDataset
from ohem_tune.evaluation.detections import Detections


def voc_eval_loop(dets: Detections, dataset: DetectionDataset) -> tuple[np.ndarray, np.ndarray]:
    """(11-point AP, area AP) per class, one detection at a time (NaN for classes without GT)."""
    index = {r.image_id: i for i, r in enumerate(dataset.records)}
    ap07 = np.full(dataset.num_classes, np.nan)
    ap10 = np.full(dataset.num_classes, np.nan)
    for k in range(dataset.num_classes):
        gts = {}
        npos = 0
        for i, r in enumerate(dataset.records):
            mask = r.labels == k + 1
            ignored = r.difficult[mask].astype(bool)
            if r.iscrowd is not None:
                ignored = ignored | r.iscrowd[mask].astype(bool)
            gts[i] = (r.boxes[mask].astype(np.float64), ignored, np.zeros(mask.sum(), bool))
            npos += int((~ignored).sum())
        rows = np.flatnonzero(dets.labels == k + 1)
        rows = rows[np.argsort(-dets.scores[rows], kind="stable")]
        tp, fp = np.zeros(len(rows)), np.zeros(len(rows))
        for d, row in enumerate(rows):
            bb = dets.boxes[row]
            bbgt, difficult, seen = gts[index[dets.image_ids[row]]]
            ovmax = -np.inf
            if bbgt.size > 0:
                ixmin = np.maximum(bbgt[:, 0], bb[0])
                iymin = np.maximum(bbgt[:, 1], bb[1])
                ixmax = np.minimum(bbgt[:, 2], bb[2])
                iymax = np.minimum(bbgt[:, 3], bb[3])
                iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
                ih = np.maximum(iymax - iymin + 1.0, 0.0)
                inters = iw * ih
                uni = (
                    (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                    + (bbgt[:, 2] - bbgt[:, 0] + 1.0) * (bbgt[:, 3] - bbgt[:, 1] + 1.0)
                    - inters
                )
                overlaps = inters / uni
                ovmax = np.max(overlaps)
                jmax = np.argmax(overlaps)
            if ovmax > 0.5:
                if not difficult[jmax]:
                    if not seen[jmax]:
                        tp[d] = 1.0
                        seen[jmax] = True
                    else:
                        fp[d] = 1.0
            else:
                fp[d] = 1.0
        if npos == 0:
            continue
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        rec = tp / float(npos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        ap07[k] = _ap07_loop(rec, prec)
        ap10[k] = _ap_area_loop(rec, prec)
    return ap07, ap10


def _ap07_loop(rec: np.ndarray, prec: np.ndarray) -> float:
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
        ap += p / 11.0
    return ap


def _ap_area_loop(rec: np.ndarray, prec: np.ndarray) -> float:
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
