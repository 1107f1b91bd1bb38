"""Selective search proposals for real images (OpenCV contrib), computed once and cached as .npz.

Optional: needs `opencv-contrib-python-headless` (`pip install -e .[selective-search]`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

import numpy as np

from ohem_tune.data.proposals import read_proposals, save_proposals_npz
from ohem_tune.data.records import DetectionDataset
from ohem_tune.data.transforms import load_image
from ohem_tune.errors import DataError

log = logging.getLogger(__name__)


def _cv2():
    try:
        import cv2

        cv2.ximgproc.segmentation.createSelectiveSearchSegmentation  # noqa: B018
    except (ImportError, AttributeError):
        raise DataError(
            "dataset.proposals.generator: selective_search needs OpenCV contrib; run "
            "`pip install opencv-contrib-python-headless` or give a proposals file"
        ) from None
    return cv2


def selective_search_image(image_rgb: np.ndarray, mode: str = "fast") -> np.ndarray:
    """(P, 4) inclusive boxes from OpenCV's selective search, in its ranking order."""
    cv2 = _cv2()
    cv2.setNumThreads(1)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(image_rgb[:, :, ::-1]))  # OpenCV wants BGR
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    else:
        ss.switchToSelectiveSearchQuality()
    rects = np.asarray(ss.process(), dtype=np.float32).reshape(-1, 4)  # x, y, w, h
    return np.stack(
        [rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2] - 1, rects[:, 1] + rects[:, 3] - 1],
        axis=1,
    )


def _cache_file(dataset: DetectionDataset, cache_dir: Path, mode: str) -> Path:
    ids = "\n".join(f"{r.image_id}:{r.path}" for r in dataset.records if not r.flipped)
    digest = hashlib.sha256(f"{mode}\n{ids}".encode()).hexdigest()[:12]
    return cache_dir / f"selective_search-{mode}-{digest}.npz"


def selective_search_proposals(
    dataset: DetectionDataset, cache_dir: str | Path, mode: str = "fast"
) -> dict[str, np.ndarray]:
    """{str(image_id): boxes} for every (unflipped) record, read from or written to the cache."""
    cache_dir = Path(cache_dir)
    path = _cache_file(dataset, cache_dir, mode)
    if path.is_file():
        return read_proposals(path)
    _cv2()
    log.warning("computing selective search for %d images (cached in %s)", len(dataset), path)
    out: dict[str, np.ndarray] = {}
    for record in dataset.records:
        if not record.flipped:  # flipped copies are made after proposals are attached
            out[str(record.image_id)] = selective_search_image(load_image(record), mode)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
    save_proposals_npz(tmp, out)
    os.replace(tmp, path)
    return out
