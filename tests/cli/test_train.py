"""`ohem-tune train`: trains into --out, resumes, and reports bad input as one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ohem_tune.cli import app
from ohem_tune.config import Config

runner = CliRunner()


@pytest.mark.slow
def test_train_writes_outputs_and_resumes(tiny_cfg: Config, tmp_path: Path):
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_cfg.to_yaml())
    out = tmp_path / "run"
    args = ["train", str(config), "--out", str(out), "--set", "train.final_eval=false"]
    args += ["--set", "train.num_threads=1", "-q"]
    first = runner.invoke(app, [*args, "--set", "train.max_iter=10"])
    assert first.exit_code == 0, first.output
    assert "final/sec_per_iter" in first.output
    assert (out / "checkpoints" / "model_0000010.pt").is_file()
    assert (out / "config.yaml").is_file()

    again = runner.invoke(app, [*args, "--set", "train.max_iter=15"])
    assert again.exit_code == 0, again.output
    assert "resuming" in again.output and "at iteration 10/15" in again.output
    frame = pd.read_parquet(out / "metrics.parquet")
    assert frame["iteration"].tolist() == [5, 10, 15]

    fresh = runner.invoke(app, [*args, "--no-resume"])
    assert fresh.exit_code != 0
    assert "already holds checkpoints" in str(fresh.exception)


def test_bad_config_is_one_red_line(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("sampler:\n  name: ohme\n")
    proc = subprocess.run(
        [Path(sys.executable).parent / "ohem-tune", "train", str(config), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sampler.name" in lines[0] and "ohem" in lines[0], proc.stderr
