"""Proposal files (.npz and COCO-style JSON), validation counts, attachment and build wiring."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ohem_tune.config import Config
from ohem_tune.data.build import build_dataset
from ohem_tune.data.proposals import (
    attach_proposals,
    read_proposals,
    save_proposals_npz,
    validate_proposals,
)
from ohem_tune.data.voc import load_voc
from ohem_tune.errors import DataError
from tests.data.builders import make_voc


def test_validate_clips_drops_and_truncates():
    boxes = np.array(
        [
            [0, 0, 9, 9],  # fine
            [-5, 2, 12, 30],  # clipped to the 20x20 image
            [np.nan, 0, 3, 3],  # non-finite
            [25, 25, 30, 30],  # entirely outside
            [5, 5, 4, 9],  # degenerate (x2 < x1)
            [3, 3, 3, 9],  # 1 px wide: below min_size 2
            [1, 1, 8, 8],
            [2, 2, 9, 9],
        ],
        dtype=np.float32,
    )
    out, counts = validate_proposals(boxes, width=20, height=20, min_size=2, max_per_image=3)
    assert counts == {
        "non_finite": 1, "outside": 2, "clipped": 1, "duplicate": 0, "too_small": 1, "truncated": 1
    }  # fmt: skip
    assert np.array_equal(out, [[0, 0, 9, 9], [0, 2, 12, 19], [1, 1, 8, 8]])


def test_npz_and_coco_json_round_trip(tmp_path: Path):
    save_proposals_npz(tmp_path / "p.npz", {"a": [[0, 0, 4, 4], [1, 1, 2, 2]], 7: np.zeros((0, 4))})
    npz = read_proposals(tmp_path / "p.npz")
    assert set(npz) == {"a", "7"} and npz["7"].shape == (0, 4)
    assert npz["a"].dtype == np.float32 and npz["a"].tolist() == [[0, 0, 4, 4], [1, 1, 2, 2]]
    entries = [
        {"image_id": 7, "bbox": [1, 1, 2, 2], "score": 0.2},
        {"image_id": 7, "bbox": [0, 0, 5, 5], "score": 0.9},
    ]
    (tmp_path / "p.json").write_text(json.dumps(entries))
    js = read_proposals(tmp_path / "p.json")
    assert js["7"].tolist() == [[0, 0, 4, 4], [1, 1, 2, 2]]  # sorted by score, inclusive


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("gone.npz", None, r"gone\.npz: proposals file not found"),
        ("bad.npz", b"junk", r"bad\.npz: unreadable \.npz"),
        ("bad.json", b"{oops", r"bad\.json: not valid JSON"),
        ("list.json", b'[{"image_id": 1}]', r"list\.json: entry 0 is not"),
        ("p.txt", b"", r"p\.txt: unknown proposals format '\.txt'; use \.mat, \.pkl"),
    ],
)
def test_bad_proposal_files(tmp_path: Path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_proposals(tmp_path / name)


def test_attach_requires_every_image_and_warns_with_counts(tmp_path: Path, caplog):
    ds = load_voc(make_voc(tmp_path / "V"), "trainval", ["cat", "dog"])
    props = {"img_a": np.array([[0, 0, 50, 5]]), "img_b": np.array([[1, 1, 5, 5]])}
    with pytest.raises(DataError, match=r"props\.npz: no proposals for image 'img_c'; regenerate"):
        attach_proposals(ds, props, "props.npz")
    props["img_c"] = np.array([[np.inf, 0, 1, 1], [0, 0, 3, 3]])
    with caplog.at_level(logging.WARNING):
        attach_proposals(ds, props, "props.npz", max_per_image=10)
    assert ds.records[0].proposals.tolist() == [[0, 0, 39, 5]]
    assert ds.records[2].proposals.tolist() == [[0, 0, 3, 3]]
    assert "clipped 1 proposals" in caplog.text and "1 non-finite" in caplog.text


def test_build_voc_with_proposal_file_and_max_per_image(tiny_cfg: Config, tmp_path: Path):
    root = make_voc(tmp_path / "V")
    (root / "ImageSets" / "Main" / "test.txt").write_text("img_a\nimg_b\n")
    boxes = np.array([[i, i, i + 5, i + 5] for i in range(8)], dtype=np.float32)
    save_proposals_npz(root / "test_props.npz", {"img_a": boxes, "img_b": boxes})
    tiny_cfg.dataset.root = root
    tiny_cfg.dataset.format = "voc"
    tiny_cfg.dataset.class_names = ["cat", "dog"]
    tiny_cfg.dataset.proposals.test_file = Path("test_props.npz")  # relative to the root
    tiny_cfg.dataset.proposals.max_per_image = 5
    ds = build_dataset(tiny_cfg, "test")
    assert [len(r.proposals) for r in ds.records] == [5, 5]
    assert np.array_equal(ds.records[1].proposals, boxes[:5])
    with pytest.raises(DataError, match=r"dataset.proposals.train_file: voc data has no built-in"):
        build_dataset(tiny_cfg, "train")
    tiny_cfg.dataset.proposals.generator = "none"
    train = build_dataset(tiny_cfg, "train")
    assert len(train) == 4 and all(len(r.proposals) == 0 for r in train.records)  # 2 + flips
