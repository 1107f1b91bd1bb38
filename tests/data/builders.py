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


# ---------------------------------------------------------------- VOC 2007 official archives

# (id, width, height, split, [(class, xmin, ymin, xmax, ymax, difficult, truncated)]), 1-based
# like VOC's XML; split is train / val (both in trainval) or test. 000009 is saved grayscale.
VOC07_IMAGES = [
    ("000005", 50, 40, "train", [("chair", 1, 2, 30, 40, 0, 1), ("dog", 20, 5, 50, 35, 1, 0)]),
    ("000007", 40, 44, "val", [("car", 8, 8, 38, 40, 0, 0)]),
    ("000009", 36, 30, "test", [("dog", 3, 4, 30, 28, 0, 1), ("car", 1, 1, 10, 12, 1, 0)]),
]
VOC07_GRAYSCALE = "000009"


def voc07_xml(image_id: str, width: int, height: int, objects) -> str:
    """An annotation as VOC 2007's Annotations/<id>.xml lays it out (pose, truncated, difficult)."""
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>{t}</truncated>"
        f"<difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2, d, t in objects
    )
    return (
        f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
        "<source><database>The VOC2007 Database</database></source>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{objs}</annotation>"
    )


def make_voc07_tars(out_dir: Path, images=VOC07_IMAGES) -> tuple[Path, Path]:
    """VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar as the official ones lay out
    their members: VOCdevkit/VOC2007/{Annotations,ImageSets/Main,JPEGImages}/..."""
    import tarfile

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for part, splits in (("trainval", ("train", "val")), ("test", ("test",))):
        stage = out_dir / f"stage_{part}"
        root = stage / "VOCdevkit" / "VOC2007"
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        chosen = [im for im in images if im[3] in splits]
        for seed, (image_id, w, h, _, objects) in enumerate(chosen):
            pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            if image_id == VOC07_GRAYSCALE:
                image = image.convert("L")
            image.save(root / "JPEGImages" / f"{image_id}.jpg", format="JPEG")
            (root / "Annotations" / f"{image_id}.xml").write_text(
                voc07_xml(image_id, w, h, objects)
            )
        lists = {s: [im[0] for im in chosen if im[3] == s] for s in splits}
        if part == "trainval":
            lists["trainval"] = [im[0] for im in chosen]
        for split, ids in lists.items():
            (root / "ImageSets" / "Main" / f"{split}.txt").write_text(
                "".join(f"{i}\n" for i in ids)
            )
        name = "VOCtrainval_06-Nov-2007.tar" if part == "trainval" else "VOCtest_06-Nov-2007.tar"
        with tarfile.open(out_dir / name, "w") as tar:
            tar.add(stage / "VOCdevkit", arcname="VOCdevkit")
        paths.append(out_dir / name)
    return paths[0], paths[1]


def write_selective_search_mat(path: Path, proposals: dict[str, np.ndarray]) -> Path:
    """fast-rcnn's voc_2007_*.mat: `boxes` a 1 x N cell of K x 4 doubles in 1-based
    [y1 x1 y2 x2] (from 0-based [x1 y1 x2 y2] `proposals`), `images` an N x 1 cell of ids."""
    import scipy.io

    ids = list(proposals)
    boxes = np.empty((1, len(ids)), dtype=object)
    names = np.empty((len(ids), 1), dtype=object)
    for i, image_id in enumerate(ids):
        boxes[0, i] = np.asarray(proposals[image_id], dtype=np.float64)[:, (1, 0, 3, 2)] + 1
        names[i, 0] = image_id
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"boxes": boxes, "images": names})
    return path


def voc07_proposals(images=VOC07_IMAGES, per_image: int = 5, seed: int = 0):
    """{split: {id: (per_image, 4) 0-based inclusive boxes inside the image}} for trainval/test."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {"trainval": {}, "test": {}}
    for image_id, w, h, split, _ in images:
        x1, y1 = rng.integers(0, w // 2, per_image), rng.integers(0, h // 2, per_image)
        x2, y2 = x1 + rng.integers(1, w // 2, per_image), y1 + rng.integers(1, h // 2, per_image)
        out["test" if split == "test" else "trainval"][image_id] = np.stack(
            [x1, y1, x2, y2], axis=1
        ).astype(np.float32)
    return out


def make_selective_search_tgz(out_dir: Path, proposals=None) -> Path:
    """selective_search_data.tgz as fast-rcnn releases it: selective_search_data/voc_2007_*.mat."""
    import tarfile

    proposals = voc07_proposals() if proposals is None else proposals
    stage = out_dir / "stage_ss" / "selective_search_data"
    for split, boxes in proposals.items():
        write_selective_search_mat(stage / f"voc_2007_{split}.mat", boxes)
    path = out_dir / "selective_search_data.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(stage, arcname="selective_search_data")
    return path
