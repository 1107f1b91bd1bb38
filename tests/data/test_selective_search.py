"""Selective search: an optional dependency; cached per dataset; a one-line error without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ohem_tune.config import Config
from ohem_tune.data.build import build_dataset
from ohem_tune.errors import DataError
from tests.data.builders import make_voc


def _has_ximgproc() -> bool:
    if importlib.util.find_spec("cv2") is None:
        return False
    import cv2

    return hasattr(cv2, "ximgproc")


def _voc_cfg(cfg: Config, root: Path, cache: Path) -> Config:
    (root / "ImageSets" / "Main" / "test.txt").write_text("img_a\nimg_b\n")
    cfg.dataset.root = root
    cfg.dataset.format = "voc"
    cfg.dataset.class_names = ["cat", "dog"]
    cfg.dataset.proposals.generator = "selective_search"
    cfg.dataset.proposals.cache_dir = cache
    return cfg


@pytest.mark.skipif(_has_ximgproc(), reason="OpenCV contrib is installed")
def test_missing_opencv_contrib_is_a_one_line_error(tiny_cfg: Config, tmp_path: Path):
    cfg = _voc_cfg(tiny_cfg, make_voc(tmp_path / "V"), tmp_path / "cache")
    with pytest.raises(DataError, match="selective_search needs OpenCV contrib; run `pip install"):
        build_dataset(cfg, "test")


@pytest.mark.skipif(not _has_ximgproc(), reason="needs opencv-contrib-python-headless")
def test_selective_search_proposals_are_cached(tiny_cfg: Config, tmp_path: Path):
    cfg = _voc_cfg(tiny_cfg, make_voc(tmp_path / "V"), tmp_path / "cache")
    first = build_dataset(cfg, "test")
    files = list((tmp_path / "cache").glob("selective_search-*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = build_dataset(cfg, "test")
    assert files[0].stat().st_mtime_ns == stamp
    for a, b in zip(first.records, again.records, strict=True):
        assert len(a.proposals) > 0 and (a.proposals == b.proposals).all()
        assert (a.proposals[:, 2] <= a.width - 1).all()
