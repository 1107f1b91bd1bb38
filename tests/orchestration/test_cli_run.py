"""`ohem-tune run --dry-run` and the CLI's one-line errors (no Ray is started)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ohem_tune.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "ohem-tune")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"COLUMNS": "200", "PATH": str(Path(sys.executable).parent), "HOME": str(cwd)}
    return subprocess.run(
        [CLI, "run", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def test_dry_run_lists_every_trial_and_the_cost_and_starts_nothing(tmp_path):
    spec = ROOT / "search_spaces" / "paper_ablation.yaml"
    out = run_cli(str(spec), "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "profile local: 39 trial(s)" in out.stdout
    for variant in load_spec(spec).variants:
        assert variant.name in out.stdout
    assert "0,1,2" in out.stdout  # the three seeds of each row
    assert "estimated cost:" in out.stdout and "CPU-hours" in out.stdout
    assert "nothing was started" in out.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()

    paper = run_cli(str(spec), "--dry-run", "--profile", "paper", "--seeds", "2", cwd=tmp_path)
    assert "profile paper: 26 trial(s)" in paper.stdout
    assert "GPU-hours" in paper.stdout


def test_dry_run_of_a_search_prints_the_space(tmp_path):
    out = run_cli(str(ROOT / "search_spaces" / "ohem_hpo.yaml"), "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Optuna search: 16 samples" in out.stdout
    assert "sampler.nms_thresh" in out.stdout and "if sampler.name=ohem" in out.stdout
    assert "log[0.001, 0.1]" in out.stdout  # the local profile's scale applied to the LR range
    assert "ASHA" in out.stdout
    assert "selection: eval/val/mAP on the val split" in out.stdout  # never on test


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--profile", "papr"], "profile 'papr' is not defined (did you mean 'paper'?)"),
        (["--set", "solver.lrr=0.1"], "solver.lrr: unknown key (did you mean 'lr'?)"),
        (["--set", "solver.lr"], "expected KEY=VALUE"),
    ],
)
def test_bad_input_is_one_red_line_and_exit_2(tmp_path, args, expected):
    out = run_cli(str(ROOT / "search_spaces" / "paper_ablation.yaml"), "--dry-run", *args,
                  cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    missing = run_cli(str(tmp_path / "nope.yaml"), "--dry-run", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.yaml: file not found" in missing.stderr


def test_missing_data_fails_before_anything_starts(tmp_path):
    spec = ROOT / "search_spaces" / "paper_ablation.yaml"
    out = run_cli(str(spec), "--profile", "paper", cwd=tmp_path)
    assert out.returncode == 2
    assert "variant 'frcn_vggm' (profile 'paper'): dataset.root:" in out.stderr
    assert "does not exist" in out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


def test_only_and_resources_select_rows_and_override_resources(tmp_path):
    spec = ROOT / "search_spaces" / "paper_ablation.yaml"
    out = run_cli(str(spec), "--dry-run", "--profile", "paper", "--only", "frcn_vgg16,ohem_vgg16",
                  "--resources", "cpu=1,gpu=0", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "profile paper: 2 trial(s)" in out.stdout
    assert "frcn_vggm" not in out.stdout and "CPU-hours" in out.stdout  # gpu=0: a CPU estimate
    typo = run_cli(str(spec), "--dry-run", "--only", "frcn_vg16", cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean 'frcn_vgg16'" in typo.stderr
    bad = run_cli(str(spec), "--dry-run", "--resources", "gpu=2", cwd=tmp_path)
    assert bad.returncode == 2 and "--resources" in bad.stderr and "one GPU" in bad.stderr
