"""build_dataset on the tiny synthetic preset: cache reuse, splits, proposals, flipped copies."""

from __future__ import annotations

import numpy as np
import pytest

from ohem_tune.config import Config
from ohem_tune.data.build import build_dataset, synthetic_root
from ohem_tune.data.synthetic import CLASS_NAMES, META_FILE
from ohem_tune.data.transforms import load_image
from ohem_tune.errors import DataError


def test_synthetic_is_generated_once_and_reused(tiny_cfg: Config):
    root = synthetic_root(tiny_cfg)
    stamp = (root / META_FILE).stat().st_mtime_ns
    assert synthetic_root(tiny_cfg) == root
    assert (root / META_FILE).stat().st_mtime_ns == stamp
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".tmp-")]


def test_test_split_has_records_with_proposals(tiny_cfg: Config):
    test = build_dataset(tiny_cfg, "test")
    assert len(test) == 8 and test.class_names == list(CLASS_NAMES)
    for r in test.records:
        assert not r.flipped
        assert len(r.proposals) > 50
        assert (r.proposals[:, 0] >= 0).all() and (r.proposals[:, 2] <= r.width - 1).all()
        assert (r.proposals[:, 2] >= r.proposals[:, 0]).all()
        assert ((r.labels >= 1) & (r.labels <= len(CLASS_NAMES))).all()


def test_train_split_appends_mirrored_copies(tiny_cfg: Config):
    train = build_dataset(tiny_cfg, "train")
    tiny_cfg.input.flip = False
    plain = build_dataset(tiny_cfg, "train")
    n = len(plain)
    assert len(train) == 2 * n
    for orig, flip in zip(train.records[:n], train.records[n:], strict=True):
        assert flip.flipped and not orig.flipped and flip.image_id == orig.image_id
        w = orig.width
        assert np.array_equal(flip.boxes[:, 0], w - 1 - orig.boxes[:, 2])
        assert np.array_equal(flip.proposals[:, 2], w - 1 - orig.proposals[:, 0])
        assert np.array_equal(flip.labels, orig.labels)
    # The mirrored pixels hold the mirrored object: mean colour inside the box is unchanged.
    orig, flip = train.records[0], train.records[n]
    x1, y1, x2, y2 = orig.boxes[0].astype(int)
    fx1, fy1, fx2, fy2 = flip.boxes[0].astype(int)
    a = load_image(orig)[y1 : y2 + 1, x1 : x2 + 1]
    b = load_image(flip)[fy1 : fy2 + 1, fx1 : fx2 + 1]
    assert np.array_equal(a[:, ::-1], b)


def test_unwritable_cache_is_a_one_line_error(tiny_cfg: Config, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    tiny_cfg.dataset.synthetic.cache_dir = blocker / "cache"
    with pytest.raises(DataError, match="cannot write the synthetic dataset cache"):
        build_dataset(tiny_cfg, "test")
