"""build_dataset on the tiny synthetic preset: cache reuse, splits, proposals, flipped copies."""

from __future__ import annotations

import numpy as np
import pytest

from ohem_tune.config import Config, build_config, deep_merge
from ohem_tune.data.build import build_dataset, synthetic_root
from ohem_tune.data.synthetic import CLASS_NAMES, META_FILE
from ohem_tune.data.transforms import load_image
from ohem_tune.errors import DataError
from tests.data.builders import VOC_IMAGES, make_voc


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


def test_val_split_synthetic_and_voc(tiny_cfg: Config, tmp_path):
    val = build_dataset(tiny_cfg, "val")
    test = build_dataset(tiny_cfg, "test")
    train = build_dataset(tiny_cfg, "train")
    assert len(val) == len(test) and not any(r.flipped for r in val.records)
    assert val.meta["split"] == "val" and all(len(r.proposals) > 50 for r in val.records)
    ids = {r.image_id for r in val.records}
    assert not ids & ({r.image_id for r in test.records} | {r.image_id for r in train.records})

    # VOC: the devkit's own train / val lists (VOC07 layout); val reads dataset.val_split
    root = make_voc(tmp_path / "VOC2007", split="trainval")
    lists = root / "ImageSets" / "Main"
    (lists / "train.txt").write_text("img_a\nimg_c\n")
    (lists / "val.txt").write_text("img_b\n")
    dataset = {"format": "voc", "root": str(root), "class_names": ["cat", "dog"],
               "train_split": "train", "proposals": {"generator": "none"}}  # fmt: skip
    cfg = build_config(deep_merge(tiny_cfg.model_dump(mode="json"), {"dataset": dataset}), "t")
    voc_val = build_dataset(cfg, "val")
    assert [r.image_id for r in voc_val.records] == ["img_b"]
    x1, y1, x2, y2 = VOC_IMAGES[1][3][0][1:5]
    assert voc_val.records[0].boxes.tolist() == [[x1 - 1, y1 - 1, x2 - 1, y2 - 1]]
    cfg.dataset.train_split = "trainval"  # contains val: selecting on it would measure nothing
    with pytest.raises(DataError) as info:
        build_dataset(cfg, "val")
    message = str(info.value)
    assert "\n" not in message and "shares 1 images with dataset.train_split 'trainval'" in message
    assert "dataset.train_split: train" in message
    cfg.dataset.format = "coco"
    with pytest.raises(DataError, match="dataset.val_split: 'val' is not supported for COCO"):
        build_dataset(cfg, "val")


def test_training_images_without_a_usable_roi_are_dropped_as_filter_roidb(
    tiny_cfg: Config, tmp_path, caplog
):
    # img_d's only object is difficult: no training object, so every RoI has IoU 0 -- no
    # background in [bg_lo 0.1, 0.5) either; the heuristic could never draw a RoI from it
    images = [*VOC_IMAGES[:2], ("img_d", 30, 30, [("cat", 2, 2, 20, 20, 1)])]
    root = make_voc(tmp_path / "VOC2007", images=images, split="trainval")
    dataset = {"format": "voc", "root": str(root), "class_names": ["cat", "dog"],
               "proposals": {"generator": "none"}}  # fmt: skip
    tree = deep_merge(tiny_cfg.model_dump(mode="json"), {"dataset": dataset})
    heuristic = build_config(deep_merge(tree, {"sampler": {"bg_lo": 0.1}}))
    with caplog.at_level("WARNING", logger="ohem_tune.data.build"):
        train = build_dataset(heuristic, "train", for_training=True)
    assert sorted({r.image_id for r in train.records}) == ["img_a", "img_b"]  # and flipped copies
    assert len(train) == 4 and train.meta["unusable_dropped"] == 1
    assert "1 training image(s) dropped" in caplog.text
    # evaluating or inspecting the train split keeps it (its false positives count there)
    assert len(build_dataset(heuristic, "train")) == 6
    # bg_lo 0 (OHEM, FRCN without the heuristic): its RoIs are backgrounds; it stays
    ohem = build_config(deep_merge(tree, {"sampler": {"bg_lo": 0.0}}))
    kept = build_dataset(ohem, "train", for_training=True)
    assert "img_d" in {r.image_id for r in kept.records} and len(kept) == 6
    # dataset.use_difficult: the difficult object trains, so the image does too
    used = deep_merge(tree, {"sampler": {"bg_lo": 0.1}, "dataset": {"use_difficult": True}})
    used_set = build_dataset(build_config(used), "train", for_training=True)
    assert "img_d" in {r.image_id for r in used_set.records}
    # the test split keeps every image
    test_tree = deep_merge(tree, {"dataset": {"test_split": "trainval"}})
    assert len(build_dataset(build_config(test_tree), "test")) == 3


def test_proposal_files_relative_to_a_symlinked_devkit_stay_beside_it(tiny_cfg: Config, tmp_path):
    # py-faster-rcnn's layout: data/VOCdevkit is a link to the devkit on a big disk, and
    # data/selective_search_data sits beside the link, where the paper profile's
    # dataset.root/../../selective_search_data points
    from tests.data.builders import write_selective_search_mat

    devkit = make_voc(tmp_path / "disk" / "VOCdevkit" / "VOC2007", split="trainval")
    data = tmp_path / "data"
    data.mkdir()
    (data / "VOCdevkit").symlink_to(devkit.parent, target_is_directory=True)
    boxes = {i: np.array([[0.0, 0.0, 9.0, 9.0]]) for i, *_ in VOC_IMAGES}
    write_selective_search_mat(data / "selective_search_data" / "voc_2007_test.mat", boxes)
    proposals = {"test_file": "../../selective_search_data/voc_2007_test.mat"}
    dataset = {"format": "voc", "root": str(data / "VOCdevkit" / "VOC2007"),
               "class_names": ["cat", "dog"], "test_split": "trainval",
               "proposals": proposals}  # fmt: skip
    cfg = build_config(deep_merge(tiny_cfg.model_dump(mode="json"), {"dataset": dataset}))
    test = build_dataset(cfg, "test")
    assert [r.proposals.tolist() for r in test.records] == [[[0.0, 0.0, 9.0, 9.0]]] * 3
