"""Released proposal layouts (fast-rcnn .mat, Detectron / detectron2 .pkl) built here exactly as
their releases write them; each must load to the same 0-based boxes as the .npz of the same
proposals, and a malformed file of each kind must be a one-line error naming the file."""

from __future__ import annotations

import os
import pickle
import sys
import types
from enum import IntEnum
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ohem_tune.config import Config
from ohem_tune.config.dataset import ProposalConfig
from ohem_tune.data.build import build_dataset, synthetic_root
from ohem_tune.data.proposals import (
    read_proposals,
    save_proposals_npz,
    unique_boxes,
    validate_proposals,
)
from ohem_tune.errors import DataError
from tests.data.builders import make_voc


def _proposals(seed: int = 0) -> dict[str, np.ndarray]:
    """Integer 0-based inclusive boxes (as selective search gives) for three VOC-style ids."""
    rng = np.random.default_rng(seed)
    out = {}
    for image_id, count in (("000005", 7), ("000007", 1), ("000009", 12)):
        xy = rng.integers(0, 200, (count, 2))
        wh = rng.integers(1, 150, (count, 2))
        out[image_id] = np.concatenate([xy, xy + wh - 1], axis=1).astype(np.float32)
    return out


def write_fast_rcnn_mat(path: Path, proposals, images: str = "cell", **extra) -> Path:
    """fast-rcnn's selective_search_data layout: `boxes` a 1 x N cell of K x 4 doubles in
    1-based [y1 x1 y2 x2]; `images` the ids (an N x 1 cell of strings, or a char matrix)."""
    ids = list(proposals)
    boxes = np.empty((1, len(ids)), dtype=object)
    for i, image_id in enumerate(ids):
        boxes[0, i] = np.asarray(proposals[image_id], dtype=np.float64)[:, (1, 0, 3, 2)] + 1
    if images == "cell":
        names = np.empty((len(ids), 1), dtype=object)
        for i, image_id in enumerate(ids):
            names[i, 0] = image_id
    else:
        names = np.array(ids)  # a char matrix, one id per row
    scipy.io.savemat(path, {"boxes": boxes, "images": names, **extra})
    return path


def write_detectron_pkl(path: Path, proposals, ids=None) -> Path:
    """Detectron's rpn_generator output: boxes / scores / ids / cfg, cPickle protocol 2."""
    data = {
        "boxes": [np.asarray(b, dtype=np.float32) for b in proposals.values()],
        "scores": [np.linspace(1, 0, len(b), dtype=np.float32) for b in proposals.values()],
        "ids": list(ids if ids is not None else proposals),
        "cfg": "MODEL:\n  TYPE: generalized_rcnn\n",
    }
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def _pickled_as_detectron2(obj, monkeypatch) -> bytes:
    """Pickle obj while a stand-in detectron2.structures.boxes.BoxMode is importable, so an
    enum bbox_mode is recorded under detectron2's global name (then the stand-in is gone)."""
    with monkeypatch.context() as m:
        for name in ("detectron2", "detectron2.structures", "detectron2.structures.boxes"):
            m.setitem(sys.modules, name, types.ModuleType(name))
        sys.modules["detectron2.structures.boxes"].BoxMode = BOX_MODE
        data = pickle.dumps(obj)
    assert "detectron2" not in sys.modules
    return data


BOX_MODE = IntEnum(
    "BoxMode", [("XYXY_ABS", 0), ("XYWH_ABS", 1)], module="detectron2.structures.boxes"
)


def write_detectron2_pkl(path: Path, proposals, mode, monkeypatch) -> Path:
    """detectron2's COCOEvaluator proposal dump: continuous boxes (width x2 - x1), stored
    shuffled with their objectness logits (the loader sorts by descending logit)."""
    rng = np.random.default_rng(1)
    boxes, logits = [], []
    for b in proposals.values():
        cont = b + np.array([0, 0, 1, 1], dtype=np.float32)  # inclusive -> continuous corners
        if int(mode) == 1:
            cont = np.concatenate([cont[:, :2], cont[:, 2:] - cont[:, :2]], axis=1)  # XYWH
        order = rng.permutation(len(b))
        boxes.append(cont[order])
        logits.append(np.linspace(5, -5, len(b)).astype(np.float32)[order])
    data = {"ids": list(proposals), "boxes": boxes, "objectness_logits": logits, "bbox_mode": mode}
    path.write_bytes(_pickled_as_detectron2(data, monkeypatch))
    return path


def _assert_same(loaded: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(loaded) == set(expected)
    for key, boxes in expected.items():
        assert loaded[key].dtype == np.float32
        np.testing.assert_array_equal(loaded[key], boxes, err_msg=key)


# ------------------------------------------------------------------------- same boxes as .npz


@pytest.mark.parametrize("images", ["cell", "char"])
def test_fast_rcnn_mat_loads_as_the_npz(tmp_path: Path, images):
    props = _proposals()
    save_proposals_npz(tmp_path / "p.npz", props)
    mat = write_fast_rcnn_mat(tmp_path / "voc_2007_test.mat", props, images)
    raw = scipy.io.loadmat(mat)["boxes"]
    assert raw.shape == (1, 3) and raw[0, 0].shape == (7, 4) and raw[0, 0].min() >= 1
    _assert_same(read_proposals(mat), read_proposals(tmp_path / "p.npz"))


def test_detectron_pkl_loads_as_the_npz(tmp_path: Path):
    props = _proposals()
    save_proposals_npz(tmp_path / "p.npz", props)
    pkl = write_detectron_pkl(tmp_path / "rpn_proposals.pkl", props)
    assert b"_codecs" in pkl.read_bytes()  # protocol 2 spells bytes through _codecs.encode
    _assert_same(read_proposals(pkl), read_proposals(tmp_path / "p.npz"))
    ints = write_detectron_pkl(tmp_path / "coco.pickle", props, ids=[5, 7, 9])
    assert sorted(read_proposals(ints)) == ["5", "7", "9"]


@pytest.mark.parametrize("mode", [0, 1, BOX_MODE.XYXY_ABS, BOX_MODE.XYWH_ABS])
def test_detectron2_pkl_loads_as_the_npz(tmp_path: Path, monkeypatch, mode):
    props = _proposals()
    save_proposals_npz(tmp_path / "p.npz", props)
    pkl = write_detectron2_pkl(tmp_path / "proposals.pkl", props, mode, monkeypatch)
    if isinstance(mode, IntEnum):
        assert b"detectron2.structures.boxes" in pkl.read_bytes()
    _assert_same(read_proposals(pkl), read_proposals(tmp_path / "p.npz"))


def test_detectron2_default_mode_and_d1_key_names(tmp_path: Path):
    """Without bbox_mode detectron2 assumes XYXY_ABS; 'scores' is renamed objectness_logits."""
    props = {"a": np.array([[0, 0, 9, 9], [2, 2, 5, 5]], dtype=np.float32)}
    data = {
        "indexes": ["a"],
        "boxes": [np.array([[2, 2, 6, 6], [0, 0, 10, 10]], dtype=np.float32)],
        "objectness_logits": [np.array([0.1, 0.9], dtype=np.float32)],
    }
    (tmp_path / "d2.pkl").write_bytes(pickle.dumps(data, protocol=5))
    _assert_same(read_proposals(tmp_path / "d2.pkl"), props)


# ------------------------------------------------------------------------------ filters


def test_unique_boxes_keeps_first_occurrences_in_order():
    boxes = np.array(
        [[5, 5, 20, 20], [0, 0, 9, 9], [5.2, 5, 20, 20], [1, 1, 5, 5], [0, 0, 9, 9]],
        dtype=np.float32,
    )
    assert unique_boxes(boxes).tolist() == [0, 1, 3]
    # the authors' hash (x1 + 1e3 y1 + ...) would merge these two; whole rows do not
    assert unique_boxes(np.array([[1000, 0, 1200, 5], [0, 1, 1200, 5]])).tolist() == [0, 1]


def test_mat_with_duplicates_and_small_boxes_through_the_build(tiny_cfg: Config, tmp_path):
    root = make_voc(tmp_path / "VOC2007")
    (root / "ImageSets" / "Main" / "test.txt").write_text("img_a\nimg_b\nimg_c\n")
    a = np.array(
        [
            [3, 3, 20, 20],
            [0, 0, 9, 9],
            [3, 3, 20, 20],  # duplicate of row 0
            [4, 4, 6, 6],  # x2 - x1 = 2, y2 - y1 = 2: py-faster-rcnn drops it (h > 2 fails)
            [4, 4, 6, 7],  # y2 - y1 = 3: kept
            [0, 0, 9, 9],  # duplicate of row 1
        ],
        dtype=np.float32,
    )
    props = {"img_a": a, "img_b": a[:2], "img_c": a[4:5]}
    write_fast_rcnn_mat(root / "voc_2007_test.mat", props)
    tiny_cfg.dataset.root = root
    tiny_cfg.dataset.format = "voc"
    tiny_cfg.dataset.class_names = ["cat", "dog"]
    tiny_cfg.dataset.proposals.test_file = Path("voc_2007_test.mat")
    kept = build_dataset(tiny_cfg, "test").records[0].proposals
    assert kept.tolist() == a.tolist()  # defaults: every box, duplicates and all
    tiny_cfg.dataset.proposals.unique_boxes = True
    tiny_cfg.dataset.proposals.min_size = 2
    tiny_cfg.dataset.proposals.min_size_rule = "py_faster_rcnn"
    ds = build_dataset(tiny_cfg, "test")
    assert ds.records[0].proposals.tolist() == a[[0, 1, 4]].tolist()
    assert ds.meta["proposal_counts"]["duplicate"] == 2
    assert ds.meta["proposal_counts"]["too_small"] == 1


def test_min_size_rules():
    boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 3], [0, 0, 1, 5], [0, 0, 3, 3]], dtype=np.float32)
    out, counts = validate_proposals(boxes, 50, 50, min_size=2, min_size_rule="py_faster_rcnn")
    assert out.tolist() == [[0, 0, 2, 3], [0, 0, 3, 3]] and counts["too_small"] == 2
    out, _ = validate_proposals(boxes, 50, 50, min_size=3)  # inclusive: width x2 - x1 + 1
    assert out.tolist() == [[0, 0, 2, 2], [0, 0, 2, 3], [0, 0, 3, 3]]


def test_max_per_image_default_keeps_all_and_a_cap_truncates():
    assert ProposalConfig().max_per_image is None
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 400, (2500, 2))
    boxes = np.concatenate([xy, xy + 50], axis=1).astype(np.float32)
    out, counts = validate_proposals(boxes, 500, 500, max_per_image=None)
    assert len(out) == 2500 and counts["truncated"] == 0
    out, counts = validate_proposals(boxes, 500, 500, max_per_image=2000)
    assert np.array_equal(out, boxes[:2000]) and counts["truncated"] == 500


def test_synthetic_proposals_unchanged_by_the_defaults(tiny_cfg: Config):
    """The built-in set has <= 2000 boxes per image, so keep-all equals the old 2000 cap."""
    ds = build_dataset(tiny_cfg, "test")
    raw = read_proposals(synthetic_root(tiny_cfg) / "proposals" / "test.npz")
    for record in ds.records:
        capped, _ = validate_proposals(raw[record.image_id], record.width, record.height, 1, 2000)
        assert len(raw[record.image_id]) <= 2000
        assert np.array_equal(record.proposals, capped)


# ----------------------------------------------------------------------- malformed files


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _mat(tmp_path: Path, name: str, **variables) -> Path:
    scipy.io.savemat(tmp_path / name, variables)
    return tmp_path / name


def _cells(*arrays) -> np.ndarray:
    out = np.empty((1, len(arrays)), dtype=object)
    for i, a in enumerate(arrays):
        out[0, i] = np.asarray(a, dtype=np.float64)
    return out


def _ids_cell(*ids) -> np.ndarray:
    out = np.empty((len(ids), 1), dtype=object)
    for i, v in enumerate(ids):
        out[i, 0] = v
    return out


def _v73(tmp_path: Path) -> Path:
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116)
    (tmp_path / "v73.mat").write_bytes(header + bytes(8) + b"\x00\x02IM" + bytes(400))
    return tmp_path / "v73.mat"


def _pkl(tmp_path: Path, name: str, obj) -> Path:
    (tmp_path / name).write_bytes(pickle.dumps(obj))
    return tmp_path / name


BOX = [[1.0, 1.0, 5.0, 5.0]]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda t: _mat(t, "wrongkey.mat", all_boxes=_cells(BOX), images=_ids_cell("a")),
            r"wrongkey\.mat: no 'boxes' variable \(found \['all_boxes', 'images'\]\)",
        ),
        (
            lambda t: _mat(t, "noids.mat", boxes=_cells(BOX)),
            r"noids\.mat: no 'images' variable",
        ),
        (
            lambda t: _mat(
                t, "shape.mat", boxes=_cells(BOX, np.ones((3, 5))), images=_ids_cell("a", "b")
            ),
            r"shape\.mat: boxes cell 1 \(image 'b'\) has shape \(3, 5\); expected K x 4",
        ),
        (
            lambda t: _mat(t, "count.mat", boxes=_cells(BOX, BOX, BOX), images=_ids_cell("a", "b")),
            r"count\.mat: 'boxes' has 3 cells but 'images' has 2 ids",
        ),
        (
            lambda t: _mat(t, "matrix.mat", boxes=np.ones((2, 4)), images=_ids_cell("a", "b")),
            r"matrix\.mat: 'boxes' is a float64 array of shape \(2, 4\); expected a 1 x N cell",
        ),
        (_v73, r"v73\.mat: a MATLAB v7\.3 \(HDF5\) \.mat file.*re-save it as MATLAB v7"),
        (
            lambda t: (t / "junk.mat").write_bytes(b"junk" * 64) and t / "junk.mat",
            r"junk\.mat: unreadable \.mat",
        ),
        (
            lambda t: _pkl(t, "d1key.pkl", {"box": [np.ones((1, 4))], "ids": [1]}),
            r"d1key\.pkl: no \['boxes'\] key \(found \['box', 'ids'\]\); expected the Detectron",
        ),
        (
            lambda t: _pkl(t, "d1shape.pkl", {"boxes": [np.ones((2, 5))], "ids": [1]}),
            r"d1shape\.pkl: boxes entry 0 has shape \(2, 5\); expected K x 4",
        ),
        (
            lambda t: _pkl(t, "d1count.pkl", {"boxes": [np.ones((1, 4))] * 2, "ids": [1]}),
            r"d1count\.pkl: 'boxes' has 2 entries but 'ids' has 1",
        ),
        (
            lambda t: _pkl(
                t,
                "d2count.pkl",
                {"boxes": [np.ones((2, 4))], "ids": [1], "objectness_logits": [np.ones(3)]},
            ),
            r"d2count\.pkl: image '1' has 2 boxes but 3 objectness_logits",
        ),
        (
            lambda t: _pkl(
                t,
                "d2mode.pkl",
                {
                    "boxes": [np.ones((2, 4))],
                    "ids": [1],
                    "objectness_logits": [np.ones(2)],
                    "bbox_mode": 4,
                },
            ),
            r"d2mode\.pkl: bbox_mode 4 is not supported; use XYXY_ABS \(0\) or XYWH_ABS \(1\)",
        ),
        (
            lambda t: _pkl(t, "evil.pkl", {"boxes": [_Evil()], "ids": [1]}),
            r"evil\.pkl: refused to unpickle global (os|posix|nt)\.system",
        ),
        (
            lambda t: _pkl(t, "list.pkl", [np.ones((1, 4))]),
            r"list\.pkl: holds a list; expected a dict with 'boxes' and 'ids'",
        ),
        (
            lambda t: (t / "empty.pkl").write_bytes(b"") or t / "empty.pkl",
            r"empty\.pkl: unreadable pickle",
        ),
    ],
)
def test_malformed_files_are_one_line_errors(tmp_path: Path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        read_proposals(path)
    assert "\n" not in str(info.value)
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()
