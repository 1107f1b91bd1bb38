"""Small on-disk VOC and COCO datasets written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# (image id, width, height, [(class, xmin, ymin, xmax, ymax, difficult)]) in VOC 1-based pixels
VOC_IMAGES = [
    ("img_a", 40, 30, [("cat", 1, 1, 10, 12, 0), ("dog", 20, 5, 40, 30, 1)]),
    ("img_b", 32, 32, [("dog", 5, 6, 20, 25, 0)]),
    ("img_c", 24, 20, []),
]


def write_image(path: Path, width: int, height: int, seed: int = 0) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def voc_xml(width: int | None, height: int | None, objects) -> str:
    size = "" if width is None else f"<size><width>{width}</width><height>{height}</height></size>"
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2, d in objects
    )
    return f"<annotation>{size}{objs}</annotation>"


def make_voc(root: Path, images=VOC_IMAGES, split: str = "trainval") -> Path:
    """A VOC devkit dir with JPEGImages, Annotations and ImageSets/Main/<split>.txt."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for seed, (image_id, w, h, objects) in enumerate(images):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", w, h, seed)
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(w, h, objects))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text(
        "\n".join(i for i, *_ in images) + "\n"
    )
    return root


def make_coco(root: Path) -> Path:
    """A COCO instances file with non-contiguous category ids, a crowd box and an empty image."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images = [(101, 40, 30), (205, 32, 32), (307, 24, 20)]
    for seed, (image_id, w, h) in enumerate(images):
        write_image(root / "images" / f"{image_id}.jpg", w, h, seed)
    coco = {
        "images": [
            {"id": i, "file_name": f"images/{i}.jpg", "width": w, "height": h} for i, w, h in images
        ],
        "annotations": [
            {"id": 1, "image_id": 101, "category_id": 18, "bbox": [0, 0, 10, 12], "iscrowd": 0},
            {"id": 2, "image_id": 101, "category_id": 3, "bbox": [19, 4, 21, 26], "iscrowd": 1},
            {"id": 3, "image_id": 205, "category_id": 3, "bbox": [4, 5, 16, 20], "iscrowd": 0},
        ],
        "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(coco))
    return path
