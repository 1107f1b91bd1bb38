"""VOC07 mAP speed: the vectorised evaluator vs a straightforward per-detection loop, same data.

    .venv/bin/python benchmarks/voc_eval_speed.py [--images 5000] [--classes 20] [--per-image 100]

Builds a VOC-like synthetic case (2-3 GT boxes per image, ~10% difficult; 100 detections per
image over all classes: jittered hits, duplicates and background boxes, with tied scores), times
`ohem_tune.evaluation.voc_eval` (validation included) and the devkit-style loop below, checks that
both give the same AP for every class, and prints both times and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ohem_tune.data.records import DetectionDataset, ImageRecord
from ohem_tune.evaluation import Detections, voc_eval


def make_case(
    num_images: int, num_classes: int, per_image: int, seed: int = 0
) -> tuple[DetectionDataset, Detections]:
    """A dataset of random GT and a table of per_image detections per image."""
    rng = np.random.default_rng(seed)
    records, ids, labels, boxes, scores = [], [], [], [], []
    for i in range(num_images):
        g = int(rng.integers(1, 4))
        xy = rng.uniform(0, 400, (g, 2))
        gt = np.concatenate([xy, xy + rng.uniform(20, 200, (g, 2))], axis=1).astype(np.float32)
        gt_labels = rng.integers(1, num_classes + 1, g)
        records.append(
            ImageRecord(
                image_id=f"{i:06d}",
                path=Path(f"{i:06d}.jpg"),
                width=600,
                height=600,
                boxes=gt,
                labels=gt_labels,
                difficult=rng.random(g) < 0.1,
                proposals=np.zeros((0, 4), np.float32),
            )
        )
        hits = min(per_image, 3 * g)  # each GT hit up to ~3 times (duplicates), jittered
        src = rng.integers(0, g, hits)
        hit_boxes = gt[src] + rng.normal(0, 8, (hits, 4))
        xy = rng.uniform(0, 500, (per_image - hits, 2))
        bg = np.concatenate([xy, xy + rng.uniform(10, 150, (per_image - hits, 2))], axis=1)
        b = np.concatenate([hit_boxes, bg])
        boxes.append(
            np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], 1)
        )
        labels.append(np.concatenate([gt_labels[src], rng.integers(1, num_classes + 1, len(bg))]))
        ids.append(np.full(per_image, f"{i:06d}", dtype=object))
        # hits tend to score higher; 3 decimals give many ties (exercises the stable order)
        scores.append(np.round(np.r_[rng.uniform(0.3, 1, hits), rng.uniform(0, 0.7, len(bg))], 3))
    names = [f"class{k}" for k in range(num_classes)]
    table = Detections(
        np.concatenate(ids), np.concatenate(labels), np.concatenate(boxes), np.concatenate(scores)
    )
    return DetectionDataset("bench", names, records), table


def voc07_loop(dets: Detections, dataset: DetectionDataset) -> np.ndarray:
    """The devkit's rules one detection at a time (py-faster-rcnn's voc_eval structure)."""
    index = {r.image_id: i for i, r in enumerate(dataset.records)}
    aps = np.full(dataset.num_classes, np.nan)
    for k in range(dataset.num_classes):
        gts, npos = {}, 0
        for i, r in enumerate(dataset.records):
            mask = r.labels == k + 1
            gts[i] = (
                r.boxes[mask].astype(np.float64),
                r.difficult[mask],
                np.zeros(mask.sum(), bool),
            )
            npos += int((~r.difficult[mask]).sum())
        rows = np.flatnonzero(dets.labels == k + 1)
        rows = rows[np.argsort(-dets.scores[rows], kind="stable")]
        tp, fp = np.zeros(len(rows)), np.zeros(len(rows))
        for d, row in enumerate(rows):
            bb = dets.boxes[row]
            bbgt, difficult, seen = gts[index[dets.image_ids[row]]]
            ovmax, jmax = -np.inf, -1
            if bbgt.size > 0:
                iw = np.maximum(
                    np.minimum(bbgt[:, 2], bb[2]) - np.maximum(bbgt[:, 0], bb[0]) + 1, 0
                )
                ih = np.maximum(
                    np.minimum(bbgt[:, 3], bb[3]) - np.maximum(bbgt[:, 1], bb[1]) + 1, 0
                )
                inters = iw * ih
                union = (
                    (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                    + (bbgt[:, 2] - bbgt[:, 0] + 1) * (bbgt[:, 3] - bbgt[:, 1] + 1)
                    - inters
                )
                overlaps = inters / union
                ovmax, jmax = np.max(overlaps), np.argmax(overlaps)
            if ovmax > 0.5:
                if not difficult[jmax]:
                    if not seen[jmax]:
                        tp[d], seen[jmax] = 1, True
                    else:
                        fp[d] = 1
            else:
                fp[d] = 1
        if npos == 0:
            continue
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ap += (np.max(prec[rec >= t]) if np.sum(rec >= t) > 0 else 0.0) / 11.0
        aps[k] = ap
    return aps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="vectorised runs (median shown)")
    args = parser.parse_args()

    data, table = make_case(args.images, args.classes, args.per_image)
    print(
        f"{args.images} images x {args.classes} classes, {len(table)} detections, "
        f"{sum(len(r.labels) for r in data.records)} GT boxes"
    )
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = voc_eval(table, data)
        times.append(time.perf_counter() - start)
    fast = float(np.median(times))
    start = time.perf_counter()
    loop_ap = voc07_loop(table, data)
    slow = time.perf_counter() - start
    np.testing.assert_allclose(result.ap_11point, loop_ap, rtol=0, atol=1e-12)
    print(f"VOC07 mAP {result.map_11point:.4f} (loop: {np.nanmean(loop_ap):.4f}, per class equal)")
    print(f"vectorised voc_eval: {fast:.3f} s (median of {args.repeats})")
    print(f"per-detection loop:  {slow:.3f} s")
    print(f"speed-up: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
