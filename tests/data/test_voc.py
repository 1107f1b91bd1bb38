"""VOC devkit loader: coordinates, difficult, class lists, and each kind of bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ohem_tune.data.voc import VOC_CLASSES, load_voc
from ohem_tune.errors import DataError
from tests.data.builders import make_voc, voc_xml


@pytest.fixture()
def voc_root(tmp_path: Path) -> Path:
    root = make_voc(tmp_path / "VOC")
    (root / "classes.json").write_text(json.dumps({"class_names": ["cat", "dog"]}))
    return root


def test_records_are_zero_based_inclusive_with_difficult(voc_root: Path):
    ds = load_voc(voc_root, "trainval")
    assert ds.class_names == ["cat", "dog"] and len(ds) == 3
    a = ds.records[0]
    assert (a.image_id, a.width, a.height) == ("img_a", 40, 30)
    assert np.array_equal(a.boxes, [[0, 0, 9, 11], [19, 4, 39, 29]])
    assert a.labels.tolist() == [1, 2] and a.difficult.tolist() == [False, True]
    assert a.training_gt_mask().tolist() == [True, False]
    assert a.training_gt_mask(use_difficult=True).tolist() == [True, True]
    assert a.path == voc_root / "JPEGImages" / "img_a.jpg"
    assert len(ds.records[2].boxes) == 0 and ds.records[2].boxes.shape == (0, 4)


def test_class_names_from_argument_and_voc_default(tmp_path: Path):
    root = make_voc(tmp_path / "V", images=[("x", 20, 20, [("person", 1, 1, 5, 5, 0)])])
    assert load_voc(root, "trainval").class_names == list(VOC_CLASSES)
    assert load_voc(root, "trainval").records[0].labels.tolist() == [15]
    assert load_voc(root, "trainval", ["person"]).records[0].labels.tolist() == [1]


def test_empty_annotations_skipped_for_training_with_count(voc_root: Path, caplog):
    with caplog.at_level(logging.WARNING):
        ds = load_voc(voc_root, "trainval", skip_empty=True)
    assert [r.image_id for r in ds.records] == ["img_a", "img_b"]
    assert ds.meta["empty_skipped"] == 1
    assert "skipped 1 images without objects" in caplog.text


def test_box_outside_image_is_clipped_with_warning(tmp_path: Path, caplog):
    root = make_voc(tmp_path / "V", images=[("x", 20, 10, [("cat", 15, 2, 30, 12, 0)])])
    with caplog.at_level(logging.WARNING):
        ds = load_voc(root, "trainval", ["cat"])
    assert np.array_equal(ds.records[0].boxes, [[14, 1, 19, 9]])
    assert "clipped 1 boxes" in caplog.text


def test_missing_root(tmp_path: Path):
    with pytest.raises(DataError, match=r"nowhere: dataset root not found; set dataset.root"):
        load_voc(tmp_path / "nowhere", "trainval")


def test_missing_split_file_lists_found_splits(voc_root: Path):
    with pytest.raises(DataError, match=r"Main/val\.txt: split file not found.*found: trainval"):
        load_voc(voc_root, "val")


def test_xml_without_size(voc_root: Path):
    (voc_root / "Annotations" / "img_b.xml").write_text(voc_xml(None, None, []))
    with pytest.raises(DataError, match=r"img_b\.xml: no <size>"):
        load_voc(voc_root, "trainval")


def test_unknown_class_name(voc_root: Path):
    xml = voc_xml(32, 32, [("horse", 1, 1, 5, 5, 0)])
    (voc_root / "Annotations" / "img_b.xml").write_text(xml)
    with pytest.raises(DataError, match=r"img_b\.xml: unknown class 'horse'; add it to"):
        load_voc(voc_root, "trainval")


def test_missing_and_malformed_annotation(voc_root: Path):
    (voc_root / "Annotations" / "img_b.xml").write_text("<annotation><size>")
    with pytest.raises(DataError, match=r"img_b\.xml: malformed XML"):
        load_voc(voc_root, "trainval")
    (voc_root / "Annotations" / "img_b.xml").unlink()
    with pytest.raises(DataError, match=r"img_b\.xml: annotation not found"):
        load_voc(voc_root, "trainval")


def test_bad_classes_json(voc_root: Path):
    (voc_root / "classes.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"classes\.json: expected"):
        load_voc(voc_root, "trainval")
