"""COCO loader: contiguous labels, original ids, crowd handling; synthetic VOC == COCO records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ohem_tune.config import Config
from ohem_tune.data.build import synthetic_root
from ohem_tune.data.coco import load_coco
from ohem_tune.data.voc import load_voc
from ohem_tune.errors import DataError
from tests.data.builders import make_coco


def test_coco_records(tmp_path: Path):
    ds = load_coco(make_coco(tmp_path), tmp_path)
    assert ds.class_names == ["car", "dog"] and ds.category_ids == [3, 18]
    assert [r.image_id for r in ds.records] == [101, 205, 307]
    a = ds.records[0]
    assert np.array_equal(a.boxes, [[0, 0, 9, 11], [19, 4, 39, 29]])
    assert a.labels.tolist() == [2, 1]
    assert a.iscrowd.tolist() == [False, True]
    assert a.training_gt_mask(use_difficult=True).tolist() == [True, False]
    assert a.path == tmp_path / "images" / "101.jpg"


def test_coco_training_skips_images_without_usable_objects(tmp_path: Path):
    ds = load_coco(make_coco(tmp_path), tmp_path, skip_empty=True)
    assert [r.image_id for r in ds.records] == [101, 205]
    assert ds.meta["empty_skipped"] == 1


def test_coco_bad_inputs(tmp_path: Path):
    with pytest.raises(DataError, match=r"missing\.json: COCO annotation file not found"):
        load_coco(tmp_path / "missing.json", tmp_path)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match=r"broken\.json: not valid JSON"):
        load_coco(tmp_path / "broken.json", tmp_path)
    with pytest.raises(DataError, match=r"nodir: image directory not found"):
        load_coco(make_coco(tmp_path), tmp_path / "nodir")


@pytest.mark.parametrize("split", ["trainval", "test"])
def test_synthetic_voc_and_coco_give_identical_records(tiny_cfg: Config, split: str):
    root = synthetic_root(tiny_cfg)
    voc = load_voc(root, split)
    coco = load_coco(root / "annotations" / f"instances_{split}.json", root)
    assert voc.class_names == coco.class_names
    assert coco.category_ids == list(range(1, voc.num_classes + 1))
    assert len(voc) == len(coco)
    for v, c in zip(voc.records, coco.records, strict=True):
        assert int(v.image_id) == c.image_id
        assert (v.path, v.width, v.height) == (c.path, c.width, c.height)
        for name in ("boxes", "labels", "difficult", "iscrowd"):
            assert np.array_equal(getattr(v, name), getattr(c, name)), name
            assert getattr(v, name).dtype == getattr(c, name).dtype


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(categories=[]), "no categories"),
        (lambda d: d["annotations"][0].update(category_id=99), "unknown category_id 99"),
        (lambda d: d["images"][0].pop("width"), "image 101 has no width/height"),
    ],
)
def test_coco_bad_annotations(tmp_path: Path, edit, message):
    path = make_coco(tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        load_coco(path, tmp_path)
