"""GPU acceptance run: one command on the first CUDA machine, one JSON card for docs/.

On a CUDA GPU (meant to finish in under 10 minutes): trains the heuristic and OHEM samplers
for a few hundred iterations at paper scale (VGG16 trunk, randomly initialised: no weights are
needed; 600 px synthetic images with ~2000 proposals each; N = 2, B = 128) with AMP off and on
(bf16 where the GPU has it, else fp16), evaluates each run on a few test images, then runs two
trials (small_vggm, 128 px) packed on one GPU (`resources: {gpu: 0.5}`) through `ohem-tune run`.
The card records the GPU and its software, sec/iter per sampler and AMP mode with the phase
split (data / forward / ranking / backward), peak allocated and reserved memory, the OHEM /
heuristic ratios and, beside them, the paper's Titan X figures.

    .venv/bin/python benchmarks/gpu_acceptance.py            # -> docs/gpu_card_<gpu>.json
    .venv/bin/python benchmarks/gpu_acceptance.py --dry-run  # CPU, toy scale (CI)

Without CUDA it stops with one line, unless --dry-run: the same code path on the CPU at toy
scale (tiny images and trunk, a handful of iterations, the packed trials on CPUs). Times are
measurements, never pass marks: the exit code is 1 only when a part failed to run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohem_tune import tracking_keys as tk  # noqa: E402
from ohem_tune.config import build_config  # noqa: E402
from ohem_tune.engine import Trainer  # noqa: E402
from ohem_tune.engine.device import cuda_unavailable_reason, nvidia_driver_version  # noqa: E402
from ohem_tune.engine.hooks import Hook  # noqa: E402
from ohem_tune.engine.machine import cpu_model, torch_build  # noqa: E402

CARD_VERSION = 1
SAMPLERS = {"heuristic": 0.1, "ohem": 0.0}  # sampler -> bg_lo (the paper's settings)
PHASE_KEYS = (tk.PHASE_DATA, tk.PHASE_FORWARD, tk.PHASE_RANKING, tk.PHASE_BACKWARD)
FINAL_KEYS = (
    tk.FINAL_PEAK_MEM_ALLOCATED,
    tk.FINAL_PEAK_MEM_RESERVED,
    tk.FINAL_PEAK_MEM_GB,
    tk.FINAL_SEC_PER_ITER,
    tk.FINAL_TRAIN_SECONDS,
    tk.FINAL_MAP,
)
PACKED_SPEC_NAME = "gpu_acceptance_packed"


def _paper_cost(heur_s: float, ohem_s: float, heur_gb: float, ohem_gb: float) -> dict:
    return {
        "sec_per_iter": {"heuristic": heur_s, "ohem": ohem_s},
        "ohem_over_heuristic_time": round(ohem_s / heur_s, 2),
        "max_memory_gb": {"heuristic": heur_gb, "ohem": ohem_gb},
        "ohem_over_heuristic_memory": round(ohem_gb / heur_gb, 2),
    }


# Shrivastava et al. 2016, the cost table of the CVPR poster (Caffe on an Nvidia Titan X).
PAPER = {
    "source": "Shrivastava et al. 2016 (CVPR poster), Caffe on an Nvidia Titan X",
    "VGG16": {**_paper_cost(0.57, 0.87, 6.4, 7.7), "note": "trained with gradient accumulation"},
    "VGG_CNN_M_1024": _paper_cost(0.13, 0.22, 2.6, 3.6),
    "memory_note": "the paper's figure is the process's GPU memory; ours are torch's allocated "
    "and reserved (caching allocator) peaks during training, the CUDA context excluded",
}


@dataclass(frozen=True)
class Scale:
    """What one acceptance run trains: the legs' config and the packed trials' spec."""

    name: str
    legs: dict[str, Any]  # config tree shared by the four legs
    iters: int
    log_period: int
    packed_base: dict[str, Any]  # the packed spec's base config
    packed_iters: int
    packed_resources: dict[str, float] = field(default_factory=lambda: {"cpu": 2, "gpu": 0.5})


def scales(cache_dir: Path) -> dict[str, Scale]:
    """paper: the legs train VGG16 at 600 px (~2000 RoIs per image), the packed trials the
    small_vggm trunk on the 128 px set; toy: both on the smoke spec's tiny set and trunk."""
    cache = str(cache_dir)
    tiny = {
        "dataset": {"format": "synthetic", "synthetic": {"preset": "tiny", "cache_dir": cache}},
        "input": {"scales": [96], "max_size": 160},
        "model": {"backbone": "tiny", "fc_dim": 64, "roi_op": "roi_align"},
        "sampler": {"rois_per_batch": 32},
        "solver": {"ims_per_batch": 2, "lr": 0.01, "steps": [100000]},
        "test": {"scales": [96], "max_size": 160},
    }
    paper = {
        "dataset": {
            "format": "synthetic",
            # the paper preset's images and proposals; a few images suffice for timing
            "synthetic": {"preset": "paper", "num_train": 16, "num_test": 4, "cache_dir": cache},
            "num_workers": 4,
        },
        "input": {"scales": [600], "max_size": 1000},
        "model": {"backbone": "vgg16", "roi_op": "roi_pool", "fc_dim": 4096},
        "sampler": {"rois_per_batch": 128},
        "solver": {"ims_per_batch": 2, "lr": 0.001, "steps": [100000]},
        "test": {"scales": [600], "max_size": 1000},
    }
    toy_legs = {**tiny, "dataset": {**tiny["dataset"], "num_workers": 0}}
    small = {
        **tiny,
        "dataset": {"format": "synthetic", "synthetic": {"preset": "small", "cache_dir": cache}},
        "input": {"scales": [128], "max_size": 213},
        "model": {"backbone": "small_vggm", "fc_dim": 256, "roi_op": "roi_align"},
        "sampler": {"rois_per_batch": 128},
        "test": {"scales": [128], "max_size": 213},
    }
    return {
        "paper": Scale("paper", paper, 200, 20, small, 400),
        "toy": Scale("toy", toy_legs, 6, 2, toy_legs, 6, {"cpu": 1, "gpu": 0.5}),
    }


# ----------------------------------------------------------------------------- the legs
class PeriodLog(Hook):
    """Keeps the train/* metrics of every log period."""

    def __init__(self) -> None:
        self.periods: list[dict[str, float]] = []

    def on_log(self, iteration: int, metrics: dict[str, float]) -> None:
        self.periods.append(dict(metrics))


def steady(periods: list[dict[str, float]], key: str) -> float | None:
    """Median of `key` over the log periods after the first (warm-up: autotuning, allocator)."""
    kept = periods[1:] or periods
    values = [p[key] for p in kept if p.get(key) is not None]
    return statistics.median(values) if values else None


def amp_on_mode(device: torch.device) -> str:
    """bf16 where the GPU supports it, else fp16; bf16 on the CPU (the dry run)."""
    # native bf16 only (sm_80+): torch's default also counts emulation, which the trainer refuses
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "fp16"
    return "bf16"


def leg_config(scale: Scale, sampler: str, amp: str, iters: int, device: torch.device):
    """The validated config of one leg: `scale.legs` plus sampler, AMP and the schedule."""
    tree = json.loads(json.dumps(scale.legs))  # a deep copy
    tree["sampler"].update({"name": sampler, "bg_lo": SAMPLERS[sampler]})
    tree["solver"]["amp"] = amp
    tree["train"] = {
        "max_iter": iters,
        "log_period": scale.log_period,
        "checkpoint_period": 0,
        "keep_checkpoints": 1,
        "device": device.type,
        "final_eval": True,
    }
    return build_config(tree, f"benchmarks/gpu_acceptance.py:{scale.name}")


def run_leg(
    scale: Scale, sampler: str, amp: str, iters: int, device: torch.device, out_dir: Path
) -> dict[str, Any]:
    """Train one sampler in one AMP mode; its steady sec/iter, phases, memory and mAP."""
    cfg = leg_config(scale, sampler, amp, iters, device)
    log = PeriodLog()
    row: dict[str, Any] = {"sampler": sampler, "amp": amp, "iterations": iters, "error": None}
    started = time.perf_counter()
    trainer = None
    try:
        trainer = Trainer(cfg, out_dir, hooks=[log], resume=False)
        amp_dtype = trainer.amp_dtype
        row["amp_dtype_used"] = str(amp_dtype).removeprefix("torch.") if amp_dtype else "float32"
        row["deterministic"] = cfg.train.deterministic
        row["matmul_precision"] = getattr(cfg.train, "matmul_precision", None)
        final = trainer.train()
    except Exception as exc:  # an OOM or an error in one leg must not hide the others
        row["error"] = one_line(exc)
        final = {}
    finally:
        del trainer
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next leg's reserved peak starts from zero
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # VGG16: ~1.6 GB each
    row["wall_s"] = round(time.perf_counter() - started, 2)
    row["sec_per_iter"] = steady(log.periods, tk.SEC_PER_ITER)
    row["phase"] = {key: steady(log.periods, key) for key in PHASE_KEYS}
    row["final"] = {key: final.get(key) for key in FINAL_KEYS}
    row["log_periods"] = len(log.periods)
    return row


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def ratio(num: float | None, den: float | None) -> float | None:
    return round(num / den, 3) if num is not None and den else None


def ratios(legs: dict[str, dict[str, Any]], amp_modes: list[str]) -> dict[str, Any]:
    """OHEM / heuristic per AMP mode (time, ranking share, memory) and AMP's speed-up."""
    out: dict[str, Any] = {}
    for amp in amp_modes:
        heur, ohem = legs[f"heuristic/{amp}"], legs[f"ohem/{amp}"]
        out[f"amp_{amp}"] = {
            "ohem_over_heuristic_time": ratio(ohem["sec_per_iter"], heur["sec_per_iter"]),
            "ohem_ranking_share": ratio(ohem["phase"][tk.PHASE_RANKING], ohem["sec_per_iter"]),
            "ohem_over_heuristic_mem_allocated": ratio(
                ohem["final"][tk.FINAL_PEAK_MEM_ALLOCATED],
                heur["final"][tk.FINAL_PEAK_MEM_ALLOCATED],
            ),
            "ohem_over_heuristic_mem_reserved": ratio(
                ohem["final"][tk.FINAL_PEAK_MEM_RESERVED], heur["final"][tk.FINAL_PEAK_MEM_RESERVED]
            ),
        }
    off, on = amp_modes
    out["amp_speedup"] = {
        s: ratio(legs[f"{s}/{off}"]["sec_per_iter"], legs[f"{s}/{on}"]["sec_per_iter"])
        for s in SAMPLERS
    }
    return out


# ----------------------------------------------------------------------------- packed trials
def packed_spec(scale: Scale, iters: int, device: str) -> dict[str, Any]:
    """Two variants (heuristic, OHEM) that share one GPU: `resources.gpu` 0.5 each."""
    base = json.loads(json.dumps(scale.packed_base))
    base["train"] = {
        "max_iter": iters,
        "log_period": max(1, iters // 4),
        "checkpoint_period": 0,
        "device": device,
    }
    return {
        "name": PACKED_SPEC_NAME,
        "description": "Two trials packed on one GPU (benchmarks/gpu_acceptance.py).",
        "base": base,
        "variants": [
            {
                "name": "frcn",
                "label": "Fast R-CNN",
                "baseline": True,
                "set": {"sampler.name": "heuristic", "sampler.bg_lo": SAMPLERS["heuristic"]},
            },
            {
                "name": "ohem",
                "label": "OHEM",
                "set": {"sampler.name": "ohem", "sampler.bg_lo": SAMPLERS["ohem"]},
            },
        ],  # fmt: skip
        "seeds": 1,
        "resources": dict(scale.packed_resources),
        "max_failures": 0,
    }


def run_packed(scale: Scale, work: Path, dry_run: bool) -> dict[str, Any]:
    """`ohem-tune run` of the packed spec on a private local Ray; its trials read from MLflow."""
    spec = packed_spec(scale, scale.packed_iters, "cpu" if dry_run else "cuda")
    spec_path = work / "packed_spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    cmd = [str(Path(sys.executable).parent / "ohem-tune"), "run", str(spec_path),
           "--tracking-uri", uri, "--storage-path", str(work / "ray_results")]  # fmt: skip
    ray_tmp = tempfile.mkdtemp(prefix="oga", dir="/tmp")  # Ray's socket paths are length-capped
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0",
           "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    visible = "cpu"
    if dry_run:
        cmd += ["--resources", "cpu=1,gpu=0"]
    else:  # one GPU visible to Ray, so both trials land on it
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        env["CUDA_VISIBLE_DEVICES"] = visible
    result: dict[str, Any] = {
        "resources": spec["resources"] if not dry_run else {"cpu": 1, "gpu": 0},
        "spec_resources": spec["resources"],
        "cuda_visible_devices": visible,
        "iterations": scale.packed_iters,
        "error": None,
    }
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=480)
        (work / "packed_run.log").write_text(proc.stdout + proc.stderr)
        result["returncode"] = proc.returncode
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:]
            result["error"] = f"ohem-tune run exited {proc.returncode}: {' '.join(tail)}"
    except subprocess.TimeoutExpired:
        result["returncode"] = None
        result["error"] = "ohem-tune run did not finish within 480 s"
    except OSError as exc:  # e.g. no ohem-tune beside this interpreter
        result["returncode"] = None
        result["error"] = one_line(exc)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    result["wall_s"] = round(time.perf_counter() - started, 2)
    result["log"] = str(work / "packed_run.log")
    trials = packed_trials(uri)
    result["trials"] = trials
    result["all_finished"] = len(trials) == 2 and all(t["status"] == "FINISHED" for t in trials)
    result["concurrent"] = len(trials) == 2 and max(t["start_unix"] for t in trials) < min(
        t["end_unix"] or 0 for t in trials
    )
    if result["error"] is None and not result["all_finished"]:
        result["error"] = f"expected 2 FINISHED trials, MLflow has {len(trials)}"
    on_gpu = all(t["device"] not in (None, "cpu") for t in trials)
    if result["error"] is None and not dry_run and not on_gpu:
        result["error"] = "a packed trial did not train on the GPU"
    return result


def packed_trials(uri: str) -> list[dict[str, Any]]:
    """Each trial run of the packed spec: status, device, node, sec/iter, memory, start/end."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(PACKED_SPEC_NAME)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], f"tags.`{tk.TAG_ROLE}` = 'trial'")
    rows = []
    for run in sorted(runs, key=lambda r: r.data.tags.get(tk.TAG_VARIANT, "")):
        tags, metrics = run.data.tags, run.data.metrics
        rows.append(
            {
                "variant": tags.get(tk.TAG_VARIANT),
                "status": run.info.status,
                "device": tags.get(tk.TAG_DEVICE),
                "gpu_memory_cap": tags.get(tk.TAG_GPU_MEMORY_CAP),
                "ray_node": tags.get("ohem_tune.ray_node"),
                "start_unix": run.info.start_time / 1000,
                "end_unix": run.info.end_time / 1000 if run.info.end_time else None,
                **{key: metrics.get(key) for key in FINAL_KEYS},
            }
        )
    return rows


# ----------------------------------------------------------------------------- the card
def machine(device: torch.device) -> dict[str, Any]:
    """The GPU (or CPU) and the software the figures depend on."""
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "driver": nvidia_driver_version(),
        "torch_build": torch_build(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "git_sha": git_sha(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            {
                "gpu_count": torch.cuda.device_count(),
                "gpu_memory_gb": round(props.total_memory / 2**30, 2),
                "capability": f"{props.major}.{props.minor}",
                "bf16_supported": torch.cuda.is_bf16_supported(including_emulation=False),
            }
        )
    return info


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia_h100_80gb_hbm3'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_lines(card: dict[str, Any]) -> list[str]:
    lines = [f"{card['machine']['device']} ({card['scale']} scale, {card['iterations']} iters)"]
    lines.append("| leg | s/iter | data | forward | ranking | backward | alloc GB | reserved GB |")
    for name, leg in card["legs"].items():
        phase, final = leg["phase"], leg["final"]
        lines.append(
            f"| {name} | {fmt(leg['sec_per_iter'])} | "
            + " | ".join(fmt(phase[k]) for k in PHASE_KEYS)
            + f" | {fmt(final[tk.FINAL_PEAK_MEM_ALLOCATED])}"
            f" | {fmt(final[tk.FINAL_PEAK_MEM_RESERVED])} |"
            + (f" error: {leg['error']}" if leg["error"] else "")
        )
    for mode, r in card["ratios"].items():
        if mode.startswith("amp_") and mode != "amp_speedup":
            lines.append(f"OHEM / heuristic ({mode}): time {r['ohem_over_heuristic_time']}, "
                         f"allocated {r['ohem_over_heuristic_mem_allocated']}, "
                         f"reserved {r['ohem_over_heuristic_mem_reserved']}")  # fmt: skip
    lines.append(f"AMP speed-up (off / on): {card['ratios']['amp_speedup']}")
    lines.append(
        f"paper (Titan X): VGG16 {PAPER['VGG16']['ohem_over_heuristic_time']}x time, "
        f"{PAPER['VGG16']['ohem_over_heuristic_memory']}x memory; VGG_CNN_M_1024 "
        f"{PAPER['VGG_CNN_M_1024']['ohem_over_heuristic_time']}x time"
    )
    packed = card["packed"]
    lines.append(
        f"packed: {len(packed['trials'])} trials, all finished {packed['all_finished']}, "
        f"concurrent {packed['concurrent']}, devices {[t['device'] for t in packed['trials']]}"
        + (f", error: {packed['error']}" if packed["error"] else "")
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy scale (CI)")
    parser.add_argument("--out", type=Path, help="the card (default: docs/gpu_card_<gpu>.json)")
    parser.add_argument("--iters", type=int, help="iterations per leg (paper 200, toy 6)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "outputs" / "gpu_acceptance")
    parser.add_argument(
        "--cache-dir", type=Path, default=ROOT / ".ohem_cache" / "datasets",
        help="synthetic dataset cache",
    )  # fmt: skip
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit(
            f"gpu_acceptance: no usable CUDA GPU: {cuda_unavailable_reason()} "
            "(--dry-run rehearses on the CPU)"
        )
    device = torch.device("cpu" if args.dry_run else "cuda:0")
    scale = scales(args.cache_dir.resolve())["toy" if args.dry_run else "paper"]
    iters = args.iters or scale.iters
    work = args.work_dir.resolve() / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    started = time.perf_counter()
    info = machine(device)
    amp_modes = ["off", amp_on_mode(device)]
    legs: dict[str, dict[str, Any]] = {}
    for amp in amp_modes:
        for sampler in SAMPLERS:
            name = f"{sampler}/{amp}"
            print(f"gpu_acceptance: training {name} ({iters} iterations)", flush=True)
            legs[name] = run_leg(scale, sampler, amp, iters, device, work / name.replace("/", "_"))
    print("gpu_acceptance: two packed trials through ohem-tune run", flush=True)
    packed = run_packed(scale, work, args.dry_run)
    problems = [f"{name}: {leg['error']}" for name, leg in legs.items() if leg["error"]]
    if packed["error"]:
        problems.append(f"packed: {packed['error']}")
    card = {
        "card": "ohem-tune GPU acceptance (benchmarks/gpu_acceptance.py)",
        "version": CARD_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dry_run": args.dry_run,
        "scale": scale.name,
        "iterations": iters,
        "setting": {
            "backbone": scale.legs["model"]["backbone"],
            "image_scale": scale.legs["input"]["scales"][0],
            "synthetic": scale.legs["dataset"]["synthetic"],
            "ims_per_batch": scale.legs["solver"]["ims_per_batch"],
            "rois_per_batch": scale.legs["sampler"]["rois_per_batch"],
            "log_period": scale.log_period,
            "amp_modes": amp_modes,
            "sec_per_iter": "median of the log-period means after the first period",
        },
        "machine": info,
        "legs": legs,
        "ratios": ratios(legs, amp_modes),
        "paper": PAPER,
        "packed": packed,
        "problems": problems,
        "total_wall_s": round(time.perf_counter() - started, 1),
    }
    out = args.out or ROOT / "docs" / f"gpu_card_{slug(info['device'])}.json"
    if args.dry_run and args.out is None:
        out = work / "gpu_card_cpu_dry_run.json"  # a rehearsal's card stays out of docs/
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(card, indent=1) + "\n")
    for line in summary_lines(card):
        print(line)
    print(f"card: {out}")
    if problems:
        print("problems:\n  " + "\n  ".join(problems))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
