"""A spec's inputs, one row per distinct dataset / proposal file / weights file, each opened
with the loader the trials use; a missing or broken file fails its row and names the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ohem_tune.config import Config
from ohem_tune.data.build import synthetic_root
from ohem_tune.data.prepare import prepare_voc07
from ohem_tune.doctor.inputs import (
    dataset_row,
    distinct_configs,
    load_trials,
    proposal_rows,
    voc07_data_dir,
    weights_file_row,
    weights_rows,
)
from tests.data.builders import voc07_proposals, write_selective_search_mat
from tests.doctor.paper_inputs import SPEC, VGGM_CONVS, official_downloads, save_vggm_trunk


@pytest.fixture
def paper_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory whose data/ was laid out by `prepare_voc07` from test archives."""
    downloads = official_downloads(tmp_path / "downloads", monkeypatch)
    work = tmp_path / "work"
    prepare_voc07([downloads], work / "data")
    monkeypatch.chdir(work)
    return work


def paper_configs(*overrides: str) -> list[Config]:
    _, trials = load_trials(SPEC, "paper", overrides)
    return distinct_configs(trials)


def test_one_config_per_row_not_per_seed():
    _, trials = load_trials(SPEC, "local")
    assert len(trials) == 39 and len(distinct_configs(trials)) == 13
    _, vggm = load_trials(SPEC, "paper", only=["frcn_vggm,ohem_vggm"], resources=["gpu=0"])
    assert [t.variant for t in vggm] == ["frcn_vggm", "ohem_vggm"]
    assert all(t.resources.gpu == 0 and t.resources.cpu == 4 for t in vggm)


def test_voc07_layout_is_recognised():
    assert voc07_data_dir(Path("/d/data/VOCdevkit/VOC2007")) == Path("/d/data")
    assert voc07_data_dir(Path("/d/data/VOCdevkit/VOC2012")) is None


def test_prepared_tree_passes_dataset_and_proposal_rows(paper_dir: Path):
    configs = paper_configs()
    (row,) = {dataset_row(c) for c in configs}
    assert row.status == "ok", row.detail
    assert (
        row.detail
        == "VOC data/VOCdevkit/VOC2007: trainval 2 images (3 objects), test 1 images (2 objects)"
    )
    rows = {r.check: r for r in proposal_rows(configs)}
    assert list(rows) == ["proposals trainval", "proposals test"]
    assert rows["proposals trainval"].detail == (
        "data/selective_search_data/voc_2007_trainval.mat: 2 images, 10 boxes (mean 5 per image); "
        "covers every id of trainval (2)"
    )
    assert rows["proposals test"].status == "ok"


def test_a_missing_jpeg_fails_the_dataset(paper_dir: Path):
    (paper_dir / "data/VOCdevkit/VOC2007/JPEGImages/000007.jpg").unlink()
    row = dataset_row(paper_configs()[0])
    assert row.status == "fail"
    assert row.detail.startswith(
        "data/VOCdevkit/VOC2007/ImageSets/Main/trainval.txt: 1 of 2 ids without "
        "JPEGImages/<id>.jpg (e.g. 000007); incomplete copy? pass VOCtrainval_06-Nov-2007.tar"
    )


def test_proposals_that_miss_an_id_of_the_split_fail(paper_dir: Path):
    boxes = voc07_proposals()["trainval"]
    boxes.pop("000007")
    write_selective_search_mat(paper_dir / "data/selective_search_data/voc_2007_trainval.mat",
                               boxes)  # fmt: skip
    rows = {r.check: r for r in proposal_rows(paper_configs())}
    assert rows["proposals trainval"].status == "fail"
    assert (
        "no proposals for 1 of the 2 ids of trainval (e.g. 000007)"
        in rows["proposals trainval"].detail
    )


def test_an_unreadable_proposal_file_fails_with_the_loaders_error(paper_dir: Path):
    (paper_dir / "data/selective_search_data/voc_2007_test.mat").write_bytes(b"not a mat file")
    rows = {r.check: r for r in proposal_rows(paper_configs())}
    assert rows["proposals test"].status == "fail"
    assert "voc_2007_test.mat: unreadable .mat" in rows["proposals test"].detail


def test_one_weights_row_per_file_naming_each_missing_one(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = weights_rows(paper_configs())
    assert [(r.check, r.status) for r in rows] == [
        ("weights vgg_cnn_m_1024", "fail"),
        ("weights vgg16", "fail"),
    ]
    assert rows[0].detail.startswith("data/imagenet_models/vgg_cnn_m_1024.pth: not found; ")
    assert rows[1].detail.startswith("data/imagenet_models/vgg16.pth: not found; ")


def test_weights_load_into_the_configured_trunk_with_the_strict_loader(tmp_path: Path):
    (cfg,) = {c.model.model_dump_json(): c for c in paper_configs() if
              c.model.backbone == "vgg_cnn_m_1024"}.values()  # fmt: skip
    good = save_vggm_trunk(tmp_path / "vggm.pth")
    row = weights_file_row(good, [cfg])
    assert row.status == "warn", row.detail  # a trunk-only file: fc6 / fc7 start random
    assert "vgg_cnn_m_1024 (caffe): trunk 10/10, roi_head 0/" in row.detail
    assert row.detail.endswith(
        "no fc6, fc7 in the file, so fc6, fc7 start from random "
        "initialisation (the paper fine-tunes them from the ImageNet model)"
    )
    bad = save_vggm_trunk(tmp_path / "bad.pth", {**VGGM_CONVS, "conv1": (96, 3, 5, 5)})
    row = weights_file_row(bad, [cfg])
    assert row.status == "fail"
    assert "conv1.weight (-> trunk.0.weight) has shape (96, 3, 5, 5)" in row.detail


def test_synthetic_data_is_cached_or_will_be_generated(tiny_cfg: Config, tmp_path: Path):
    syn = tiny_cfg.dataset.synthetic.model_copy(update={"cache_dir": tmp_path})
    cfg = tiny_cfg.model_copy(
        update={"dataset": tiny_cfg.dataset.model_copy(update={"synthetic": syn})}
    )
    before = dataset_row(cfg)
    assert before.status == "ok" and "not cached yet; `ohem-tune run` generates it" in before.detail
    folder = synthetic_root(cfg)
    after = dataset_row(cfg)
    assert after.status == "ok" and after.detail.endswith(f"cached at {folder}")
