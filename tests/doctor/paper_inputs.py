"""The paper profile's inputs, built small: official-layout archives (their checksums patched in
as the published ones) and a VGG_CNN_M_1024 trunk in Caffe blob names and shapes."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from ohem_tune.data import prepare as prep
from tests.data.builders import make_selective_search_tgz, make_voc07_tars

SPEC = Path(__file__).resolve().parents[2] / "search_spaces" / "paper_ablation.yaml"
VGGM_ROWS = "frcn_vggm,ohem_vggm"
ARCHIVES = ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar", "selective_search_data.tgz")
# VGG_CNN_M_1024's convolutions as the Caffe model names and shapes them (conv1 in BGR order).
VGGM_CONVS = {
    "conv1": (96, 3, 7, 7),
    "conv2": (256, 96, 5, 5),
    "conv3": (512, 256, 3, 3),
    "conv4": (512, 512, 3, 3),
    "conv5": (512, 512, 3, 3),
}


def save_vggm_trunk(path: Path, convs: dict[str, tuple[int, ...]] = VGGM_CONVS) -> Path:
    """A converted VGG_CNN_M_1024 state dict holding the trunk only (fc6 alone is 300 MB)."""
    gen = torch.Generator().manual_seed(0)
    blobs = {}
    for name, shape in convs.items():
        blobs[f"{name}.weight"] = torch.randn(shape, generator=gen) * 0.01
        blobs[f"{name}.bias"] = torch.zeros(shape[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blobs, path)
    return path


def official_downloads(out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A download folder with the test archives and a converted VGGM, whose MD5s the prepare
    step takes for the published ones (only the archives remain, as in a real download dir)."""
    make_voc07_tars(out)
    make_selective_search_tgz(out)
    save_vggm_trunk(out / "vgg_cnn_m_1024.pth")
    for stage in out.glob("stage_*"):
        shutil.rmtree(stage)
    archives = dict(prep.ARCHIVES)
    for name in ARCHIVES:
        md5 = hashlib.md5((out / name).read_bytes()).hexdigest()
        archives[name] = dataclasses.replace(archives[name], md5=md5)
    monkeypatch.setattr(prep, "ARCHIVES", archives)
    return out
