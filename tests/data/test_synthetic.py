"""The synthetic set: determinism, paintings at IoU 0, difficult objects, proposal statistics."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np

from ohem_tune.data.boxes import box_iou
from ohem_tune.data.synthetic import (
    META_FILE,
    PRESETS,
    VAL_META_FILE,
    VAL_SPLIT,
    ensure_synthetic,
    ensure_synthetic_val,
    generate_image,
    make_spec,
    write_synthetic_val,
)


def test_same_seed_same_image_other_seed_differs():
    spec = make_spec("tiny", seed=1)
    a, b = generate_image(spec, 0, 3), generate_image(spec, 0, 3)
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.proposals, b.proposals)
    c = generate_image(make_spec("tiny", seed=2), 0, 3)
    assert not np.array_equal(a.pixels, c.pixels) or not np.array_equal(a.boxes, c.boxes)


def test_overrides_change_cache_key_and_proposal_count():
    base = make_spec("small")
    big = make_spec("small", image_size=600)
    assert base.key() != big.key() != make_spec("small", num_train=5).key()
    assert base.key().startswith("small-seed0-")
    assert big.proposals_per_image == 2000 == PRESETS["paper"]["proposals_per_image"]
    assert make_spec("small", image_size=256).proposals_per_image < 2000


def test_images_have_paintings_at_iou_zero_and_sane_boxes():
    spec = make_spec("small")
    stats = {"paintings": 0, "difficult": 0, "objects": 0, "fg": 0, "zero": 0, "props": 0}
    for i in range(40):
        img = generate_image(spec, 0, i)
        h, w = img.pixels.shape[:2]
        assert min(h, w) == spec.image_size
        assert len(img.boxes) >= 1 and len(img.proposals) == spec.proposals_per_image
        assert (img.boxes[:, 2] <= w - 1).all() and (img.boxes[:, 3] <= h - 1).all()
        if len(img.paintings):
            assert box_iou(img.paintings, img.boxes).max() == 0
        best = box_iou(img.proposals, img.boxes).max(axis=1)
        stats["paintings"] += len(img.paintings)
        stats["difficult"] += int(img.difficult.sum())
        stats["objects"] += len(img.boxes)
        stats["fg"] += int((best >= 0.5).sum())
        stats["zero"] += int((best == 0).sum())
        stats["props"] += len(best)
    assert stats["paintings"] >= 40  # at least one per image on average
    assert 0 < stats["difficult"] < stats["objects"] / 3
    assert 0.05 < stats["fg"] / stats["props"] < 0.35  # many near objects ...
    assert stats["zero"] / stats["props"] > 0.25  # ... and many the bg_lo heuristic never sees


def _generate(cache: str) -> str:
    return str(ensure_synthetic(make_spec("tiny", seed=9, num_train=4, num_test=2), cache, 1))


def test_concurrent_generation_yields_one_complete_directory(tmp_path: Path):
    with mp.get_context("fork").Pool(2) as pool:
        roots = pool.map(_generate, [str(tmp_path)] * 2)
    assert roots[0] == roots[1]
    visible = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]
    assert visible == [Path(roots[0]).name]  # no leftover temporary directories
    root = Path(roots[0])
    assert (root / META_FILE).is_file()
    assert len(list((root / "JPEGImages").iterdir())) == 6


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_val_split_is_added_to_an_existing_cache_without_touching_train_or_test(tmp_path: Path):
    spec = make_spec("tiny", seed=5, num_train=4, num_test=3)
    root = ensure_synthetic(spec, tmp_path, 1)  # a cache written before val existed
    before = _file_bytes(root)
    assert not (root / VAL_META_FILE).exists()
    assert ensure_synthetic_val(spec, tmp_path, 1) == root  # same key, same directory
    after = _file_bytes(root)
    assert {k: after[k] for k in before} == before  # every train/test byte as it was
    val_ids = (root / "ImageSets/Main" / f"{VAL_SPLIT}.txt").read_text().split()
    other = set()
    for split in ("trainval", "test"):
        other |= set((root / "ImageSets/Main" / f"{split}.txt").read_text().split())
    assert len(val_ids) == 3 and not set(val_ids) & other
    new = sorted(set(after) - set(before))
    assert f"proposals/{VAL_SPLIT}.npz" in new and VAL_META_FILE in new
    assert all(f"JPEGImages/{i}.jpg" in new for i in val_ids)
    # val images come from their own RNG stream: none equals a train or test image
    train_pixels = [generate_image(spec, s, i).pixels.tobytes() for s, n in ((0, 4), (1, 3))
                    for i in range(n)]  # fmt: skip
    assert not {generate_image(spec, 2, i).pixels.tobytes() for i in range(3)} & set(train_pixels)
    stamp = (root / VAL_META_FILE).stat().st_mtime_ns
    ensure_synthetic_val(spec, tmp_path, 1)  # complete: reused, not rewritten
    assert (root / VAL_META_FILE).stat().st_mtime_ns == stamp


def test_val_split_is_deterministic(tmp_path: Path):
    spec = make_spec("tiny", seed=5, num_train=2, num_test=2)
    written = []
    for name in ("a", "b"):
        out = tmp_path / name
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main", "annotations", "proposals"):
            (out / sub).mkdir(parents=True)
        write_synthetic_val(spec, out)
        written.append(_file_bytes(out))
    assert written[0] == written[1] and len(written[0]) > 5
