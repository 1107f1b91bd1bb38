"""`ohem-tune data prepare voc07`: archives built here in the official layouts are verified (with
their checksums patched into the table), extracted safely and idempotently into the paper
profile's tree; mismatches, traversal, unreachable downloads and missing inputs are reported."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from ohem_tune.cli import main
from ohem_tune.data import prepare as prep
from ohem_tune.data.prepare import check_voc07_tree, prepare_voc07
from ohem_tune.data.voc import load_voc
from ohem_tune.errors import DataError
from tests.data.builders import (
    VOC07_GRAYSCALE,
    VOC07_IMAGES,
    make_selective_search_tgz,
    make_voc07_tars,
    voc07_proposals,
)

VGG16_TV = "vgg16-397923af.pth"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A download folder: both VOC tars, the proposals tgz and two weights files."""
    out = tmp_path / "downloads"
    make_voc07_tars(out)
    make_selective_search_tgz(out)
    (out / VGG16_TV).write_bytes(b"torchvision vgg16 stand-in")
    (out / "vgg_cnn_m_1024.pth").write_bytes(b"converted vggm stand-in")
    for stage in out.glob("stage_*"):  # only the archives remain, as in a real download dir
        shutil.rmtree(stage)
    return out


@pytest.fixture
def official(src: Path, monkeypatch) -> Path:
    """Make the test archives 'official': their checksums replace the published ones."""
    archives = dict(prep.ARCHIVES)
    for name in (
        "VOCtrainval_06-Nov-2007.tar",
        "VOCtest_06-Nov-2007.tar",
        "selective_search_data.tgz",
    ):
        archives[name] = dataclasses.replace(archives[name], md5=_md5(src / name))
    monkeypatch.setattr(prep, "ARCHIVES", archives)
    weights = dict(prep.WEIGHT_FILES)
    sha = hashlib.sha256((src / VGG16_TV).read_bytes()).hexdigest()
    weights[VGG16_TV] = dataclasses.replace(weights[VGG16_TV], sha256_prefix=sha[:8])
    monkeypatch.setattr(prep, "WEIGHT_FILES", weights)
    return src


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ohem-tune", *args])
    monkeypatch.setenv("COLUMNS", "250")
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prepare_lays_out_the_paper_tree_that_loads(official: Path, tmp_path: Path):
    data = tmp_path / "data"
    report = prepare_voc07([official], data)
    assert report.missing == [] and all(f.ok for f in report.findings)
    devkit = data / "VOCdevkit" / "VOC2007"
    for split in ("trainval", "train", "val", "test"):
        assert (devkit / "ImageSets" / "Main" / f"{split}.txt").is_file()
    assert (data / "imagenet_models" / "vgg16.pth").read_bytes() == b"torchvision vgg16 stand-in"
    assert (data / "imagenet_models" / "vgg_cnn_m_1024.pth").is_file()
    assert not list(data.glob(".extract-*"))  # temp dirs are gone

    # the devkit loads: 1-based XML -> 0-based records, difficult flags kept
    trainval = load_voc(devkit, "trainval")
    expected = {im[0]: im for im in VOC07_IMAGES if im[3] != "test"}
    assert sorted(r.image_id for r in trainval.records) == sorted(expected)
    for record in trainval.records:
        objects = expected[record.image_id][4]
        np.testing.assert_array_equal(
            record.boxes, np.array([o[1:5] for o in objects], dtype=np.float32) - 1
        )
        assert record.difficult.tolist() == [bool(o[5]) for o in objects]
    (test_record,) = load_voc(devkit, "test").records
    assert test_record.image_id == VOC07_GRAYSCALE
    assert Image.open(test_record.path).mode == "L"  # the grayscale JPEG came through as is

    # the proposals are fast-rcnn's .mat, byte for byte what the archive held
    for split, boxes in voc07_proposals().items():
        mat = scipy.io.loadmat(data / "selective_search_data" / f"voc_2007_{split}.mat")
        cells = mat["boxes"].ravel()
        ids = [str(np.asarray(v).ravel()[0]) for v in mat["images"].ravel()]
        assert ids == list(boxes)
        for cell, expected_boxes in zip(cells, boxes.values(), strict=True):
            np.testing.assert_array_equal(cell[:, (1, 0, 3, 2)] - 1, expected_boxes)


def test_second_run_skips_what_is_in_place(official: Path, tmp_path: Path, monkeypatch):
    data = tmp_path / "data"
    prepare_voc07([official], data)
    jpeg = data / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000005.jpg"
    before = jpeg.stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(prep, "_safe_extract", lambda *a: calls.append(a) or 0)
    report = prepare_voc07([official], data)
    assert calls == []  # nothing extracted again
    assert jpeg.stat().st_mtime_ns == before
    skipped = [line for line in report.actions if "skipped" in line]
    assert len(skipped) == 5  # 3 archives + 2 weights files
    assert report.missing == []


def test_a_changed_archive_is_verified_again(official: Path, tmp_path: Path):
    data = tmp_path / "data"
    prepare_voc07([official], data)
    tar = official / "VOCtest_06-Nov-2007.tar"
    with open(tar, "ab") as f:  # same name, other bytes: must not be skipped on the marker
        f.write(b"\0" * 1024)
    with pytest.raises(DataError, match="VOCtest_06-Nov-2007.tar: MD5 [0-9a-f]{32} does not match"):
        prepare_voc07([official], data)


def test_checksum_mismatch_is_a_one_line_error(src: Path, tmp_path: Path, monkeypatch, capsys):
    tar = src / "VOCtrainval_06-Nov-2007.tar"
    with pytest.raises(DataError) as exc:
        prepare_voc07([tar], tmp_path / "data")
    message = str(exc.value)
    assert str(tar) in message and _md5(tar) in message
    assert "expected c52e279531787c972589f7e41ab4ae64" in message  # torchvision's published MD5
    assert not (tmp_path / "data" / "VOCdevkit").exists()  # nothing extracted
    code, _, err = _run(
        monkeypatch, capsys, "data", "prepare", "voc07", "--from", str(tar),
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert code == 2 and "does not match the official VOCtrainval_06-Nov-2007.tar" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_weights_hash_prefix_is_checked(src: Path, tmp_path: Path):
    with pytest.raises(DataError, match=r"vgg16-397923af.pth: SHA-256 [0-9a-f]{16}\.\.\. does not"):
        prepare_voc07([src / VGG16_TV], tmp_path / "data")
    assert not (tmp_path / "data" / "imagenet_models" / "vgg16.pth").exists()


def test_no_verify_proceeds_and_says_so_loudly(src: Path, tmp_path: Path, monkeypatch, capsys):
    data = tmp_path / "data"
    code, out, err = _run(
        monkeypatch, capsys, "data", "prepare", "voc07", "--from", str(src),
        "--data-dir", str(data), "--no-verify",
    )  # fmt: skip
    assert code == 0, out + err
    assert "checksums are NOT checked" in out
    assert out.count("checksum NOT verified (--no-verify)") == 3
    assert "SHA-256 NOT verified" in out and "all inputs of the paper profile are in place" in out
    # a verified run afterwards does not take the unverified extraction on trust
    with pytest.raises(DataError, match="does not match the official"):
        prepare_voc07([src], data)


def _evil_tar(path: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tar:
        good = tarfile.TarInfo("VOCdevkit/VOC2007/ImageSets/Main/trainval.txt")
        good.size = 7
        tar.addfile(good, io.BytesIO(b"000005\n"))
        member.size = len(payload) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    "name, kind, reason",
    [
        ("VOCdevkit/../../escaped.txt", tarfile.REGTYPE, "leaves the target directory"),
        ("/tmp/absolute.txt", tarfile.REGTYPE, "leaves the target directory"),
        ("VOCdevkit/VOC2007/link", tarfile.SYMTYPE, "is a link or special file"),
        ("elsewhere/file.txt", tarfile.REGTYPE, "is outside VOCdevkit/"),
    ],
)
def test_unsafe_members_are_refused(tmp_path: Path, monkeypatch, name, kind, reason):
    member = tarfile.TarInfo(name)
    member.type = kind
    if kind == tarfile.SYMTYPE:
        member.linkname = "../../../../etc/passwd"
    (tmp_path / "in").mkdir()
    tar = _evil_tar(tmp_path / "in" / "VOCtrainval_06-Nov-2007.tar", member)
    archives = dict(prep.ARCHIVES)
    key = "VOCtrainval_06-Nov-2007.tar"
    archives[key] = dataclasses.replace(archives[key], md5=_md5(tar))
    monkeypatch.setattr(prep, "ARCHIVES", archives)
    data = tmp_path / "work" / "data"
    with pytest.raises(DataError, match=f"refusing to extract: member .* {reason}"):
        prepare_voc07([tar], data)
    assert not (tmp_path / "work" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert not (data / "VOCdevkit").exists()  # all members are checked before any is written
    assert not list(data.glob(".extract-*"))


def test_missing_inputs_are_listed_with_fixes_and_exit_1(
    official: Path, tmp_path: Path, monkeypatch, capsys
):
    data = tmp_path / "data"
    code, out, _ = _run(
        monkeypatch, capsys, "data", "prepare", "voc07", "--data-dir", str(data),
        "--from", str(official / "VOCtrainval_06-Nov-2007.tar"),
        "--from", str(official / "selective_search_data.tgz"),
    )  # fmt: skip
    assert code == 1
    assert "3 input(s) still missing" in out
    fixes = [line for line in out.splitlines() if line.startswith("- ")]
    by_item = {line[2:].split(":")[0]: line for line in fixes}
    assert list(by_item) == ["split test", "weights vgg16", "weights vgg_cnn_m_1024"]
    assert "VOCtest_06-Nov-2007.tar (http://host.robots.ox.ac.uk/" in by_item["split test"]
    assert "vgg16-397923af.pth (https://download.pytorch.org/models/" in by_item["weights vgg16"]


def test_missing_image_of_a_listed_id_is_reported(official: Path, tmp_path: Path):
    data = tmp_path / "data"
    prepare_voc07([official], data)
    (data / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000007.jpg").unlink()
    findings = {f.item: f for f in check_voc07_tree(data)}
    assert findings["split train"].ok and findings["split test"].ok
    for split in ("val", "trainval"):
        assert not findings[f"split {split}"].ok
        assert "without JPEGImages/<id>.jpg (e.g. 000007)" in findings[f"split {split}"].detail


def test_caffe_models_are_not_converted_silently(src: Path, tmp_path: Path):
    (src / "vgg_cnn_m_1024.pth").unlink()
    caffe = tmp_path / "VGG_CNN_M_1024.v2.caffemodel"
    caffe.write_bytes(b"caffe blob")
    report = prepare_voc07([caffe], tmp_path / "data")
    assert (tmp_path / "data" / "imagenet_models" / caffe.name).is_file()
    assert any("cannot read and does not convert" in w for w in report.warnings)
    (vggm,) = [f for f in report.findings if f.item == "weights vgg_cnn_m_1024"]
    assert not vggm.ok and "is a Caffe model (not converted)" in vggm.detail
    assert "conv1..conv5" in vggm.fix and "ohem_tune/modeling/weights.py" in vggm.fix
    assert not (tmp_path / "data" / "imagenet_models" / "vgg_cnn_m_1024.pth").exists()


def test_download_without_network_is_a_clear_error(tmp_path: Path, monkeypatch, capsys):
    dead = "http://127.0.0.1:9/"
    archives = {n: dataclasses.replace(a, url=dead + n) for n, a in prep.ARCHIVES.items()}
    weights = {
        n: dataclasses.replace(w, url=dead + n if w.url else None)
        for n, w in prep.WEIGHT_FILES.items()
    }
    monkeypatch.setattr(prep, "ARCHIVES", archives)
    monkeypatch.setattr(prep, "WEIGHT_FILES", weights)
    code, _, err = _run(
        monkeypatch, capsys, "data", "prepare", "voc07", "--download", "--data-dir",
        str(tmp_path / "data"),
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"cannot fetch {dead}VOCtrainval_06-Nov-2007.tar" in err and "--from" in err
    assert not list((tmp_path / "data" / "downloads").glob("*"))  # no partial file left


def test_unknown_or_absent_from_paths_are_errors(tmp_path: Path):
    odd = tmp_path / "voc2007.tar"
    odd.write_bytes(b"")
    with pytest.raises(DataError, match="voc2007.tar: not one of the known inputs"):
        prepare_voc07([odd], tmp_path / "data")
    with pytest.raises(DataError, match="nope: no such file or directory"):
        prepare_voc07([tmp_path / "nope"], tmp_path / "data")
