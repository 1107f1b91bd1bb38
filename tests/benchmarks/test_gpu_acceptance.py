"""benchmarks/gpu_acceptance.py: without CUDA it stops with one line; `--dry-run` runs the whole
acceptance path on the CPU at toy scale (four training legs, two packed trials through
`ohem-tune run`) and writes a card with every field the GPU card has."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ohem_tune import tracking_keys as tk

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_acceptance.py"
PHASES = [tk.PHASE_DATA, tk.PHASE_FORWARD, tk.PHASE_RANKING, tk.PHASE_BACKWARD]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_stops_with_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--work-dir", str(tmp_path), "--out", str(tmp_path / "c")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_acceptance: no usable CUDA GPU: ")
    assert "--dry-run" in lines[0]
    assert not (tmp_path / "c").exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_dry_run_writes_the_card(tmp_path, dataset_cache):
    card_path = tmp_path / "card.json"
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--work-dir", str(tmp_path / "work"),
         "--cache-dir", str(dataset_cache), "--out", str(card_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"card: {card_path}" in out.stdout
    card = json.loads(card_path.read_text())
    assert card["dry_run"] is True and card["scale"] == "toy" and card["problems"] == []

    machine = card["machine"]
    assert machine["device"] == "cpu" and machine["torch"] == torch.__version__
    assert {"torch_cuda", "cudnn", "driver", "cpu", "git_sha"} <= machine.keys()

    assert card["setting"]["amp_modes"] == ["off", "bf16"]
    assert set(card["legs"]) == {"heuristic/off", "ohem/off", "heuristic/bf16", "ohem/bf16"}
    for name, leg in card["legs"].items():
        assert leg["error"] is None, name
        assert leg["iterations"] == card["iterations"] and leg["log_periods"] >= 2
        assert leg["sec_per_iter"] > 0
        assert leg["amp_dtype_used"] == "float32"  # no autocast on the CPU: the card says so
        assert set(leg["phase"]) == set(PHASES)
        assert all(v is not None and v >= 0 for v in leg["phase"].values()), (name, leg["phase"])
        final = leg["final"]
        assert final[tk.FINAL_PEAK_MEM_ALLOCATED] > 0  # CPU: the training peak RSS
        assert final[tk.FINAL_PEAK_MEM_RESERVED] is None  # no caching allocator on the CPU
        assert 0 <= final[tk.FINAL_MAP] <= 1
    legs = card["legs"]
    assert legs["heuristic/off"]["phase"][tk.PHASE_RANKING] == 0  # it ranks nothing
    assert legs["ohem/off"]["phase"][tk.PHASE_RANKING] > 0

    ratios = card["ratios"]["amp_off"]
    heur, ohem = legs["heuristic/off"], legs["ohem/off"]
    assert ratios["ohem_over_heuristic_time"] == round(
        ohem["sec_per_iter"] / heur["sec_per_iter"], 3
    )
    assert ratios["ohem_over_heuristic_mem_reserved"] is None
    assert set(card["ratios"]["amp_speedup"]) == {"heuristic", "ohem"}
    paper = card["paper"]
    assert paper["VGG16"]["ohem_over_heuristic_time"] == 1.53
    assert paper["VGG_CNN_M_1024"]["ohem_over_heuristic_time"] == 1.69

    packed = card["packed"]
    assert packed["spec_resources"]["gpu"] == 0.5 and packed["resources"]["gpu"] == 0
    assert packed["returncode"] == 0 and packed["error"] is None and packed["all_finished"]
    assert sorted(t["variant"] for t in packed["trials"]) == ["frcn", "ohem"]
    assert all(t["device"] == "cpu" and t[tk.FINAL_SEC_PER_ITER] > 0 for t in packed["trials"])
    assert isinstance(packed["concurrent"], bool)


def test_amp_leg_uses_bf16_only_where_the_gpu_runs_it_natively(monkeypatch):
    # torch's is_bf16_supported() counts emulation by default (True on a T4 or V100), which the
    # trainer refuses; the card must then measure fp16
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_acceptance", module)  # its dataclasses look it up
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec.loader.exec_module(module)
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation
    )
    assert module.amp_on_mode(torch.device("cuda")) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert module.amp_on_mode(torch.device("cuda")) == "bf16"
    assert module.amp_on_mode(torch.device("cpu")) == "bf16"  # the dry run
