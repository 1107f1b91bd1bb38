"""A rehearsal of the paper path on CPU: `ohem-tune run search_spaces/paper_ablation.yaml
--profile paper` on a miniature VOC2007 devkit in the real layout, selective-search proposals in
fast-rcnn's released `.mat` layout and torchvision-format VGG16 weights (random init), through
a real local Ray and a SQLite MLflow store, then `ohem-tune report`.

Only scale is overridden (image size, iterations, test images, resources); every path, format and
convention is the paper profile's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.builders import voc07_proposals, voc07_xml, write_selective_search_mat

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "ohem-tune")
SPEC = ROOT / "search_spaces" / "paper_ablation.yaml"

# (id, width, height, split, [(class, xmin, ymin, xmax, ymax, difficult, truncated)]), 1-based.
IMAGES = [
    ("000005", 112, 84, "train", [("chair", 10, 20, 60, 80, 0, 0), ("dog", 50, 5, 110, 60, 0, 1)]),
    ("000007", 96, 96, "val", [("car", 8, 8, 70, 90, 0, 0)]),
    ("000009", 100, 80, "train", [("dog", 20, 10, 90, 75, 0, 0), ("car", 1, 1, 30, 40, 1, 0)]),
    ("000012", 90, 100, "val", [("chair", 30, 30, 88, 98, 0, 1)]),
    ("000001", 104, 88, "test", [("dog", 5, 5, 70, 80, 0, 0)]),
    ("000002", 96, 72, "test", [("car", 40, 10, 95, 70, 0, 0), ("chair", 2, 2, 40, 60, 1, 0)]),
    ("000004", 80, 96, "test", [("chair", 10, 30, 70, 90, 0, 0)]),
]
GRAYSCALE = "000009"  # VOC07 has grayscale JPEGs; the loader must hand the trunk 3 channels


def make_devkit(data: Path) -> Path:
    """data/VOCdevkit/VOC2007 with Annotations, JPEGImages and ImageSets/Main split files."""
    root = data / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    splits: dict[str, list[str]] = {"train": [], "val": [], "trainval": [], "test": []}
    for image_id, w, h, split, objects in IMAGES:
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if image_id == GRAYSCALE:
            image = image.convert("L")
        image.save(root / "JPEGImages" / f"{image_id}.jpg", format="JPEG")
        (root / "Annotations" / f"{image_id}.xml").write_text(voc07_xml(image_id, w, h, objects))
        splits[split].append(image_id)
        if split in ("train", "val"):
            splits["trainval"].append(image_id)
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def make_torchvision_vgg16(path: Path) -> None:
    """A torchvision-format VGG16 state dict (randomly initialised, as vgg16-397923af.pth names)."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(vgg16().state_dict(), path)


@pytest.fixture(scope="module")
def paper_workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("paper")
    data = work / "data"
    make_devkit(data)
    for split, boxes in voc07_proposals(IMAGES, per_image=40).items():
        write_selective_search_mat(data / "selective_search_data" / f"voc_2007_{split}.mat", boxes)
    make_torchvision_vgg16(data / "imagenet_models" / "vgg16.pth")
    yield work
    # VGG16-sized checkpoints (weights + momentum, ~1 GiB each)
    for checkpoint in (work / "ray_results").rglob("*.pt"):
        checkpoint.unlink()


def ohem_tune(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


SCALE = [
    "input.scales=[96]",
    "input.max_size=160",
    "test.scales=[96]",
    "test.max_size=160",
    "train.max_iter=3",
    "train.log_period=1",
    "train.checkpoint_period=3",
    "dataset.num_workers=0",
]  # model.weights_format as the profile leaves it: torchvision for VGG16, as the file is


def test_paper_profile_rehearsal_runs_end_to_end_and_reports(paper_workdir: Path):
    run_args = ["run", str(SPEC), "--profile", "paper", "--only", "frcn_vgg16,ohem_vgg16",
                "--resources", "cpu=1,gpu=0"]  # fmt: skip
    for item in SCALE:
        run_args += ["--set", item]
    out = ohem_tune(*run_args, cwd=paper_workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 finished, 0 failed" in out.stdout

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{paper_workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("paper_ablation")
    runs = [
        r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("ohem_tune.variant")
    ]
    assert sorted(r.data.tags["ohem_tune.variant"] for r in runs) == ["frcn_vgg16", "ohem_vgg16"]
    for run in runs:
        params = run.data.params
        assert params["dataset.format"] == "voc"
        assert params["model.backbone"] == "vgg16"
        assert params["model.weights"].endswith("data/imagenet_models/vgg16.pth")
        assert params["dataset.proposals.train_file"].endswith("voc_2007_trainval.mat")
        assert "eval/mAP" in run.data.metrics or "final/mAP" in run.data.metrics

    report = ohem_tune("report", str(SPEC), "--profile", "paper", cwd=paper_workdir, timeout=300)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    table = (paper_workdir / "reports" / "paper_ablation" / "table_ablation.md").read_text()
    assert "69.9" in table and "67.2" in table  # the paper column beside the measured rows
