"""`ohem-tune eval`: per-class AP table, detections + metrics files, one-line errors (exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ohem_tune import tracking_keys as keys
from ohem_tune.cli import main
from ohem_tune.config import Config
from ohem_tune.data.build import build_dataset
from ohem_tune.engine.checkpoint import save_checkpoint
from ohem_tune.modeling import build_model


@pytest.fixture()
def run_dir(tiny_cfg: Config, tmp_path: Path) -> Path:
    """A run directory with one checkpoint of an (untrained) tiny model."""
    dataset = build_dataset(tiny_cfg, "test")
    torch.manual_seed(0)
    model = build_model(tiny_cfg, dataset.num_classes)
    payload = {
        "model": model.state_dict(),
        "config": tiny_cfg.model_dump(mode="json"),
        "class_names": dataset.class_names,
    }
    save_checkpoint(tmp_path / "run", 20, payload)
    return tmp_path / "run"


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The console entry point in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["ohem-tune", "eval", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_prints_table_and_writes_files(run_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "eval_out"
    code, stdout, stderr = _run(
        monkeypatch,
        capsys,
        str(run_dir / "checkpoints" / "model_0000020.pt"),
        "--iterative-bbox",
        "--set",
        "test.max_images=4",
        "--set",
        "test.scales=[64,96]",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert code == 0, stderr
    for name in ("disc", "square", "triangle", "cross", "mean", "AP (VOC07 11-pt)"):
        assert name in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 4
    assert metrics["iterative_bbox"] is True and metrics["scales"] == [64, 96]
    assert keys.MAP in metrics["metrics"] and keys.MAP_AREA in metrics["metrics"]
    frame = pd.read_parquet(out / "detections.parquet")
    assert list(frame.columns) == [
        "image_id",
        "label",
        "class_name",
        "x1",
        "y1",
        "x2",
        "y2",
        "score",
    ]
    assert len(frame) == metrics["num_detections"] > 0


def test_eval_of_a_run_directory_defaults_its_output_dir(run_dir, monkeypatch, capsys):
    code, stdout, stderr = _run(
        monkeypatch, capsys, str(run_dir), "--set", "test.max_images=2", "--set", "test.metric=coco"
    )
    assert code == 0, stderr
    assert "AP@[.5:.95]" in stdout and "COCO: AP" in stdout
    assert (run_dir / "eval" / "model_0000020-test" / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "model.fc_dim=8"], "--set model.*"),
        (["--set", "input.channel_order=BGR"], "--set input.channel_order"),  # as trained
        (["--set", "test.nms_thresh=7"], "test.nms_thresh"),
        (["--split", "trainval"], "--split 'trainval'"),
    ],
)
def test_bad_input_is_one_red_line_and_exit_2(run_dir, monkeypatch, capsys, args, needle):
    code, _, stderr = _run(monkeypatch, capsys, str(run_dir), *args)
    assert code == 2
    assert needle in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_missing_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    code, _, stderr = _run(monkeypatch, capsys, str(tmp_path / "nope.pt"))
    assert code == 2 and "checkpoint not found" in stderr
