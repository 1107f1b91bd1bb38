"""The built-in synthetic detection dataset: textured scenes of shapes plus look-alike distractors.

Each image has 1-4 objects of 4 shape classes (per-class colour and texture, varied scale, aspect
and mutual occlusion) on a textured, cluttered background, and 1-3 "paintings": framed pictures of
an object, outline-only shapes or recoloured shapes that overlap no object (IoU 0), so the
bg_lo = 0.1 heuristic never samples them as background. Small or heavily occluded objects are
marked difficult. Everything is drawn from numpy generators seeded by (seed, split, image index),
so a set is reproducible and image i does not depend on the others. `write_synthetic` writes it in
VOC layout, as COCO JSON and with proposals (.npz), so it goes through the same loaders as real
data. The val split (for searches) is drawn from its own RNG stream and written into the same
directory on first use (`ensure_synthetic_val`): train and test, and the cache key, are the same
with or without it. Design notes and measurements: docs/data.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ohem_tune.data.boxes import box_iou
from ohem_tune.data.proposals import save_proposals_npz
from ohem_tune.data.voc import CLASSES_FILE
from ohem_tune.errors import DataError

GENERATOR_VERSION = 2  # bump when the drawing changes: it is part of the cache key
CLASS_NAMES: tuple[str, ...] = ("disc", "square", "triangle", "cross")
TRAIN_SPLIT, TEST_SPLIT, VAL_SPLIT = "trainval", "test", "val"
META_FILE = "synthetic.json"
VAL_META_FILE = "synthetic_val.json"  # written last by write_synthetic_val: marks val complete
VAL_SPLIT_INDEX = 2  # the val RNG stream: (seed, 2, index), apart from train (0) and test (1)

# Mean RGB colour per class; objects jitter around it. Recoloured paintings use other colours.
_CLASS_RGB = np.array([[205, 60, 50], [50, 90, 205], [55, 170, 70], [225, 185, 40]], np.float32)
_FRAME_RGB = np.array([[90, 60, 30], [200, 165, 60], [35, 35, 35], [235, 235, 235]], np.float32)
PAINTING_KINDS = (0.5, 0.3, 0.2)  # framed picture, outline, recoloured shape
_PAINTING_RGB = np.array(
    [[150, 150, 150], [140, 70, 170], [60, 185, 190], [110, 80, 60]], np.float32
)


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic set is made of; its hash names the cache directory."""

    preset: str
    seed: int
    num_train: int
    num_test: int
    image_size: int  # shorter side; the longer side is 1.0-1.34 x this
    proposals_per_image: int
    max_objects: int = 4
    max_paintings: int = 3
    version: int = GENERATOR_VERSION

    def key(self) -> str:
        """Cache directory name: <preset>-seed<seed>-<hash of the generation params>."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return f"{self.preset}-seed{self.seed}-{hashlib.sha256(blob).hexdigest()[:10]}"


PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"num_train": 16, "num_test": 8, "image_size": 96, "proposals_per_image": 150},
    "small": {"num_train": 200, "num_test": 100, "image_size": 128, "proposals_per_image": 400},
    "paper": {"num_train": 5000, "num_test": 5000, "image_size": 600, "proposals_per_image": 2000},
}


def proposals_for_size(image_size: int) -> int:
    """Proposal count that grows with image area like selective search (~2000 at 600 px)."""
    return int(np.clip(round(2000 * (image_size / 600) ** 1.05), 100, 3000))


def make_spec(
    preset: str = "small",
    seed: int = 0,
    num_train: int | None = None,
    num_test: int | None = None,
    image_size: int | None = None,
) -> SyntheticSpec:
    """A spec from a preset with optional overrides (the proposal count follows image_size)."""
    base = PRESETS[preset]
    proposals = base["proposals_per_image"]
    if image_size is not None and image_size != base["image_size"]:
        proposals = proposals_for_size(image_size)
    return SyntheticSpec(
        preset=preset,
        seed=seed,
        num_train=num_train or base["num_train"],
        num_test=num_test or base["num_test"],
        image_size=image_size or base["image_size"],
        proposals_per_image=proposals,
    )


@dataclass
class SyntheticImage:
    """One generated image with its annotations (0-based inclusive boxes) and proposals."""

    pixels: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (G, 4)
    labels: np.ndarray  # (G,) 1..K
    difficult: np.ndarray  # (G,) bool
    paintings: np.ndarray  # (D, 4) distractor boxes (background, IoU 0 with every object)
    proposals: np.ndarray  # (P, 4)


# ----------------------------------------------------------------------------------- drawing


def _shape_mask(label: int, h: int, w: int) -> np.ndarray:
    """(h, w) bool silhouette of a class inside its bounding box."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (x + 0.5) / w * 2 - 1, (y + 0.5) / h * 2 - 1  # [-1, 1]
    if label == 1:  # disc (an ellipse filling the box)
        return u**2 + v**2 <= 1.0
    if label == 2:  # square (the whole box, slightly rounded corners)
        return (np.abs(u) ** 6 + np.abs(v) ** 6) <= 1.0
    if label == 3:  # triangle, apex up
        return (v >= -1) & (np.abs(u) <= (v + 1) / 2)
    return (np.abs(u) <= 0.33) | (np.abs(v) <= 0.33)  # cross


def _outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    inner = np.pad(mask, 1)  # outside the box counts as outside the shape
    for _ in range(thickness):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask & ~inner[1:-1, 1:-1]


def _texture(label: int, h: int, w: int, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) float pixels: per-class pattern modulating the object's colour."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(3.0, 6.0)
    if label == 1:  # radial shading
        r = np.sqrt(((x - w / 2) / max(w, 1)) ** 2 + ((y - h / 2) / max(h, 1)) ** 2)
        mod = 1.15 - 0.7 * r
    elif label == 2:  # stripes
        mod = 0.85 + 0.25 * (np.sin(2 * np.pi * y / period) > 0)
    elif label == 3:  # checker
        mod = 0.85 + 0.25 * (((x // period) + (y // period)) % 2)
    else:  # speckle
        mod = 0.9 + 0.2 * rng.random((h, w)).astype(np.float32)
    return rgb[None, None, :] * mod[..., None]


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency coloured noise plus clutter strokes and blobs, float (h, w, 3)."""
    grid = rng.uniform(60, 200, size=(4, 4, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(grid).resize((w, h), Image.BILINEAR), dtype=np.float32)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(rng.integers(4, 9)):  # clutter: thin lines and soft blobs
        colour = rng.uniform(30, 230, size=3).astype(np.float32)
        if rng.random() < 0.5:
            angle, offset = rng.uniform(0, np.pi), rng.uniform(0, max(h, w))
            dist = np.abs(x * np.cos(angle) + y * np.sin(angle) - offset)
            m = dist < rng.uniform(0.6, 1.6)
        else:
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.12) * min(h, w)
            m = ((x - cx) ** 2 + (y - cy) ** 2) < r**2
        base[m] = 0.5 * base[m] + 0.5 * colour
    return base


def _draw_object(canvas: np.ndarray, box: np.ndarray, label: int, rgb, rng) -> np.ndarray:
    """Paint a class shape with its texture filling `box`; returns the shape mask."""
    x1, y1, x2, y2 = box.astype(int)
    mask = _shape_mask(label, y2 - y1 + 1, x2 - x1 + 1)
    tex = _texture(label, y2 - y1 + 1, x2 - x1 + 1, np.asarray(rgb, np.float32), rng)
    canvas[y1 : y2 + 1, x1 : x2 + 1][mask] = tex[mask]
    return mask


def _draw_painting(canvas: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> None:
    """A look-alike that is background: a framed picture of an object, an outline, or a recolour.

    Framed pictures hold an exact object (class shape, colour, texture) on a flat canvas inside a
    frame, so only the context tells them apart, like the paper's paintings of people.
    """
    label = int(rng.integers(1, len(CLASS_NAMES) + 1))
    x1, y1, x2, y2 = box.astype(int)
    side = min(x2 - x1 + 1, y2 - y1 + 1)
    kind = rng.choice(3, p=PAINTING_KINDS)
    if kind == 0:  # framed picture
        frame = max(1, round(0.06 * side))
        gap = max(1, round(0.08 * side))
        canvas[y1 : y2 + 1, x1 : x2 + 1] = _FRAME_RGB[int(rng.integers(len(_FRAME_RGB)))]
        canvas[y1 + frame : y2 + 1 - frame, x1 + frame : x2 + 1 - frame] = rng.uniform(
            150, 235, size=3
        )
        inner = box + np.array([1, 1, -1, -1], np.float32) * (frame + gap)
        rgb = np.clip(_CLASS_RGB[label - 1] + rng.normal(0, 18, 3), 0, 255)
        _draw_object(canvas, inner, label, rgb, rng)
    elif kind == 1:  # outline-only shape in the class colour
        mask = _outline(_shape_mask(label, y2 - y1 + 1, x2 - x1 + 1), max(1, round(side * 0.08)))
        tex = _texture(label, y2 - y1 + 1, x2 - x1 + 1, _CLASS_RGB[label - 1], rng)
        canvas[y1 : y2 + 1, x1 : x2 + 1][mask] = tex[mask]
    else:  # the shape and texture in a colour no class uses
        _draw_object(canvas, box, label, _PAINTING_RGB[int(rng.integers(len(_PAINTING_RGB)))], rng)


def _random_box(rng: np.random.Generator, h: int, w: int, lo: float, hi: float) -> np.ndarray:
    side = rng.uniform(lo, hi) * min(h, w)
    aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
    bw = int(np.clip(round(side * np.sqrt(aspect)), 6, w - 2))
    bh = int(np.clip(round(side / np.sqrt(aspect)), 6, h - 2))
    x1, y1 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
    return np.array([x1, y1, x1 + bw - 1, y1 + bh - 1], dtype=np.float32)


def generate_image(spec: SyntheticSpec, split_index: int, index: int) -> SyntheticImage:
    """Draw image `index` of a split; depends only on (spec, split_index, index)."""
    rng = np.random.default_rng([spec.seed, split_index, index, spec.version])
    short = spec.image_size
    long = int(round(short * rng.uniform(1.0, 1.34)))
    h, w = (short, long) if rng.random() < 0.7 else (long, short)
    canvas = _background(h, w, rng)
    owner = np.full((h, w), -1, dtype=np.int32)  # which object is visible at each pixel

    num_objects = int(rng.integers(1, spec.max_objects + 1))
    obj_boxes, obj_labels = [], []
    for k in range(num_objects):
        box = _random_box(rng, h, w, 0.12, 0.55)
        label = int(rng.integers(1, len(CLASS_NAMES) + 1))
        rgb = np.clip(_CLASS_RGB[label - 1] + rng.normal(0, 18, 3), 0, 255)
        mask = _draw_object(canvas, box, label, rgb, rng)
        x1, y1, x2, y2 = box.astype(int)
        owner[y1 : y2 + 1, x1 : x2 + 1][mask] = k
        obj_boxes.append(box)
        obj_labels.append(label)

    boxes, labels, difficult = [], [], []
    for k, (box, label) in enumerate(zip(obj_boxes, obj_labels, strict=True)):
        ys, xs = np.nonzero(owner == k)
        if len(xs) < 16:
            continue  # fully hidden behind later objects: not annotated
        x1, y1, x2, y2 = box.astype(int)
        full = _shape_mask(label, y2 - y1 + 1, x2 - x1 + 1).sum()
        visible = len(xs) / full
        vis_box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)
        min_side = min(vis_box[2] - vis_box[0] + 1, vis_box[3] - vis_box[1] + 1)
        boxes.append(vis_box)
        labels.append(label)
        difficult.append(bool(visible < 0.45 or min_side < 0.1 * short))
    boxes_arr = np.array(boxes, dtype=np.float32).reshape(-1, 4)

    paintings = []
    for _ in range(int(rng.integers(1, spec.max_paintings + 1))):
        for _attempt in range(20):
            box = _random_box(rng, h, w, 0.15, 0.45)
            grown = box + np.array([-2, -2, 2, 2], dtype=np.float32)
            if len(boxes_arr) == 0 or box_iou(grown[None], boxes_arr).max() == 0:
                break
        else:
            continue
        _draw_painting(canvas, box, rng)
        paintings.append(box)
    paintings_arr = np.array(paintings, dtype=np.float32).reshape(-1, 4)

    canvas += rng.normal(0, 5, size=canvas.shape).astype(np.float32)
    pixels = np.clip(canvas, 0, 255).astype(np.uint8)
    proposals = synth_proposals(boxes_arr, paintings_arr, h, w, spec.proposals_per_image, rng)
    return SyntheticImage(
        pixels=pixels,
        boxes=boxes_arr,
        labels=np.array(labels, dtype=np.int64),
        difficult=np.array(difficult, dtype=bool),
        paintings=paintings_arr,
        proposals=proposals,
    )


def synth_proposals(
    objects: np.ndarray,
    paintings: np.ndarray,
    height: int,
    width: int,
    count: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Selective-search-like proposals: ~30% jittered around objects (IoU from ~0 to ~1),
    ~25% around paintings, ~45% clutter boxes anywhere (mostly IoU 0 with every object)."""
    n_obj = int(count * 0.30) if len(objects) else 0
    n_paint = int(count * 0.25) if len(paintings) else 0
    n_rand = count - n_obj - n_paint

    def jitter(anchors: np.ndarray, n: int) -> np.ndarray:
        base = anchors[rng.integers(0, len(anchors), n)]
        bw, bh = base[:, 2] - base[:, 0] + 1, base[:, 3] - base[:, 1] + 1
        sigma = rng.choice([0.04, 0.1, 0.2, 0.35, 0.6], size=n)
        cx = (base[:, 0] + base[:, 2]) / 2 + rng.normal(0, 1, n) * sigma * bw
        cy = (base[:, 1] + base[:, 3]) / 2 + rng.normal(0, 1, n) * sigma * bh
        nw = bw * np.exp(rng.normal(0, 1, n) * sigma)
        nh = bh * np.exp(rng.normal(0, 1, n) * sigma)
        return np.stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], axis=1)

    parts = []
    if n_obj:
        parts.append(jitter(objects, n_obj))
    if n_paint:
        parts.append(jitter(paintings, n_paint))
    side = np.exp(rng.uniform(np.log(0.05), np.log(0.9), n_rand)) * min(height, width)
    aspect = np.exp(rng.uniform(np.log(0.4), np.log(2.5), n_rand))
    rw, rh = side * np.sqrt(aspect), side / np.sqrt(aspect)
    rx, ry = rng.uniform(0, 1, n_rand) * (width - rw), rng.uniform(0, 1, n_rand) * (height - rh)
    parts.append(np.stack([rx, ry, rx + rw, ry + rh], axis=1))
    boxes = np.round(np.concatenate(parts))
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width - 1)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height - 1)
    boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0] + 1)
    boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1] + 1)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width - 1)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height - 1)
    return boxes[rng.permutation(len(boxes))].astype(np.float32)


# ----------------------------------------------------------------------------------- writing


def _voc_xml(image_id: str, img: SyntheticImage) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "synthetic"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    size = ET.SubElement(root, "size")
    h, w = img.pixels.shape[:2]
    for tag, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for box, label, diff in zip(img.boxes, img.labels, img.difficult, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = CLASS_NAMES[label - 1]
        ET.SubElement(obj, "difficult").text = str(int(diff))
        bnd = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bnd, tag).text = str(int(value) + 1)  # VOC is 1-based
    return ET.tostring(root)


def _write_one(args: tuple[SyntheticSpec, int, int, str, str]) -> dict:
    """Generate and write one image; returns its COCO entries and proposals."""
    spec, split_index, index, image_id, out = args
    img = generate_image(spec, split_index, index)
    out_dir = Path(out)
    Image.fromarray(img.pixels).save(out_dir / "JPEGImages" / f"{image_id}.jpg", quality=95)
    (out_dir / "Annotations" / f"{image_id}.xml").write_bytes(_voc_xml(image_id, img))
    h, w = img.pixels.shape[:2]
    anns = []
    for box, label, diff in zip(img.boxes, img.labels, img.difficult, strict=True):
        bw, bh = float(box[2] - box[0] + 1), float(box[3] - box[1] + 1)
        anns.append(
            {
                "image_id": int(image_id),
                "category_id": int(label),
                "bbox": [float(box[0]), float(box[1]), bw, bh],
                "area": bw * bh,
                "iscrowd": 0,
                "difficult": int(diff),
                "ignore": int(diff),
            }
        )
    return {
        "image": {"id": int(image_id), "file_name": f"JPEGImages/{image_id}.jpg", "width": w,
                  "height": h},
        "annotations": anns,
        "proposals": img.proposals,
        "paintings": img.paintings,
    }  # fmt: skip


def _write_split(
    spec: SyntheticSpec,
    out: Path,
    split: str,
    split_index: int,
    first_id: int,
    count: int,
    workers: int,
) -> None:
    """Write one split: images, XML, ImageSets list, COCO JSON and proposals (+ paintings)."""
    ids = [f"{first_id + i:06d}" for i in range(count)]
    jobs = [(spec, split_index, i, image_id, str(out)) for i, image_id in enumerate(ids)]
    if workers > 1 and count > 32:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_write_one, jobs, chunksize=16))
    else:
        results = [_write_one(job) for job in jobs]
    (out / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    anns = [a for r in results for a in r["annotations"]]
    for ann_id, ann in enumerate(anns, start=1):
        ann["id"] = ann_id
    coco = {
        "info": {"description": f"ohem-tune synthetic {spec.key()} {split}"},
        "images": [r["image"] for r in results],
        "annotations": anns,
        "categories": [
            {"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES)
        ],
    }
    (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    save_proposals_npz(
        out / "proposals" / f"{split}.npz",
        {image_id: r["proposals"] for image_id, r in zip(ids, results, strict=True)},
    )
    save_proposals_npz(
        out / "proposals" / f"{split}_paintings.npz",
        {image_id: r["paintings"] for image_id, r in zip(ids, results, strict=True)},
    )


def write_synthetic(spec: SyntheticSpec, out: str | Path, workers: int = 1) -> Path:
    """Write the set to `out` (VOC layout, COCO JSON, proposals .npz, classes.json, meta)."""
    out = Path(out)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main", "annotations", "proposals"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / CLASSES_FILE).write_text(json.dumps({"class_names": list(CLASS_NAMES)}, indent=1))
    splits = ((TRAIN_SPLIT, spec.num_train), (TEST_SPLIT, spec.num_test))
    next_id = 1
    for split_index, (split, count) in enumerate(splits):
        _write_split(spec, out, split, split_index, next_id, count, workers)
        next_id += count
    meta = {**asdict(spec), "key": spec.key(), "class_names": list(CLASS_NAMES)}
    (out / META_FILE).write_text(json.dumps(meta, indent=1))  # written last: marks completeness
    return out


def ensure_synthetic(
    spec: SyntheticSpec, cache_dir: str | Path, workers: int | None = None
) -> Path:
    """The set's directory under cache_dir, generated first if absent.

    Concurrent callers (Ray trials) serialise on a lock file, so one generates and the others wait
    and reuse; the set is written to a temporary directory and renamed, so a crash never leaves a
    directory that looks complete.
    """
    cache_dir = Path(cache_dir)
    final = cache_dir / spec.key()
    if (final / META_FILE).is_file():
        return final
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with open(cache_dir / f".{spec.key()}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / META_FILE).is_file():
                _generate_into(spec, cache_dir, final, workers)
    except OSError as exc:
        raise DataError(
            f"{cache_dir}: cannot write the synthetic dataset cache ({exc.strerror or exc}); set "
            "dataset.synthetic.cache_dir to a writable directory"
        ) from None
    return final


def _generate_into(spec: SyntheticSpec, cache_dir: Path, final: Path, workers: int | None) -> None:
    tmp = cache_dir / f".tmp-{spec.key()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    try:
        write_synthetic(spec, tmp, workers=workers)
        if final.exists():  # left by a crash before META_FILE was written (older layouts)
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def num_val_images(spec: SyntheticSpec) -> int:
    """Val images of a set: as many as its test split (not part of the cache key)."""
    return spec.num_test


def write_synthetic_val(spec: SyntheticSpec, out: str | Path, workers: int = 1) -> Path:
    """Add the val split to a written set: images drawn from the val RNG stream, ids after test's.

    Touches no train or test file; VAL_META_FILE is written last and marks the split complete.
    """
    out = Path(out)
    count = num_val_images(spec)
    first_id = spec.num_train + spec.num_test + 1
    _write_split(spec, out, VAL_SPLIT, VAL_SPLIT_INDEX, first_id, count, workers)
    meta = {"key": spec.key(), "split": VAL_SPLIT, "split_index": VAL_SPLIT_INDEX, "count": count}
    (out / VAL_META_FILE).write_text(json.dumps(meta, indent=1))
    return out


def ensure_synthetic_val(
    spec: SyntheticSpec, cache_dir: str | Path, workers: int | None = None
) -> Path:
    """The set's directory with its val split, generated into an existing cache on first use.

    Caches written before the val split existed get it here, under the same lock as
    ensure_synthetic; their train and test files are left as they are.
    """
    final = ensure_synthetic(spec, cache_dir, workers)
    if (final / VAL_META_FILE).is_file():
        return final
    cache_dir = Path(cache_dir)
    try:
        with open(cache_dir / f".{spec.key()}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / VAL_META_FILE).is_file():
                if workers is None:
                    workers = min(8, os.cpu_count() or 1)
                write_synthetic_val(spec, final, workers=workers)
    except OSError as exc:
        raise DataError(
            f"{final}: cannot write the synthetic val split ({exc.strerror or exc}); set "
            "dataset.synthetic.cache_dir to a writable directory"
        ) from None
    return final
