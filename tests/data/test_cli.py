"""`ohem-tune data synth` / `data inspect` through the real entry point."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ohem_tune.cli import main


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ohem-tune", *args])
    monkeypatch.setenv("COLUMNS", "200")
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_synth_then_inspect_voc_and_coco(tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "syn"
    code, text, _ = _run(
        monkeypatch, capsys, "data", "synth", "--out", str(out), "--preset", "tiny",
        "--num-train", "6", "--num-test", "4", "--seed", "3",
    )  # fmt: skip
    assert code == 0 and "wrote 6 trainval + 4 test images" in text
    assert len(list((out / "JPEGImages").glob("*.jpg"))) == 10
    code, voc_text, _ = _run(monkeypatch, capsys, "data", "inspect", str(out), "--split", "test")
    assert code == 0
    assert "4 images" in voc_text and "triangle" in voc_text
    assert "heuristic background: [0.1, 0.5)" in voc_text and "IoU = 0" in voc_text
    assert "can never sample" in voc_text and "paintings" in voc_text
    code, coco_text, _ = _run(
        monkeypatch, capsys, "data", "inspect", str(out), "--split", "test", "--format", "coco"
    )
    assert code == 0
    assert coco_text.split("\n", 1)[1] == voc_text.split("\n", 1)[1]  # same numbers both ways


def test_user_errors_are_one_line_exit_2(tmp_path: Path, monkeypatch, capsys):
    code, _, err = _run(monkeypatch, capsys, "data", "inspect", str(tmp_path / "missing"))
    assert code == 2 and "missing: dataset root not found" in err
    assert "Traceback" not in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    code, _, err = _run(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "full"))
    assert code == 2 and "already exists and is not empty" in err
    code, _, err = _run(
        monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "n"), "--preset", "huge"
    )
    assert code == 2 and "unknown preset 'huge'" in err


@pytest.mark.parametrize("fmt", ["yaml"])
def test_inspect_rejects_unknown_format(tmp_path: Path, monkeypatch, capsys, fmt):
    code, _, err = _run(monkeypatch, capsys, "data", "inspect", str(tmp_path), "--format", fmt)
    assert code == 2 and "--format: unknown format 'yaml'" in err


def test_inspect_a_config_uses_its_bg_lo_and_split(tmp_path: Path, monkeypatch, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "dataset:\n  synthetic:\n    preset: tiny\n"
        f"    cache_dir: {tmp_path / 'cache'}\nsampler:\n  bg_lo: 0.2\n"
    )
    code, text, err = _run(
        monkeypatch, capsys, "data", "inspect", "-c", str(cfg), "--split", "test"
    )
    assert code == 0, err
    assert "8 images" in text and "heuristic background: [0.2, 0.5)" in text
    code, text, _ = _run(monkeypatch, capsys, "data", "inspect", "-c", str(cfg))
    assert code == 0 and "32 images" in text  # trainval -> train: 16 images + flipped copies
    code, _, err = _run(monkeypatch, capsys, "data", "inspect", "-c", str(cfg), "--split", "val")
    assert code == 2 and "--split: with --config the split is train or test" in err
