"""OHEM's cost over the heuristic sampler, measured side by side in one run.

For each setting, on the same minibatches and the same model initialisation, one SGD iteration
(forward, backward, update) of:
  heuristic    Fast R-CNN's sampler (pools and back-propagates only the B selected RoIs)
  ohem         ours: no-grad ranking pass over all RoIs, then re-pool the selected with grad
  ohem_reuse   ours, variant: pool all RoIs once with grad, rank from it, index the selected
  naive        full autograd forward of pool + head over all RoIs, loss masked to the selected
  ohem_fast, ohem_lowrank, ohem_channels
               OHEM with an approximate read-only pass (sampler.ranking: fast | lowrank |
               channels, in --ranking-dtype; `ohem_lowrank@64` sets sampler.ranking_rank,
               `ohem_channels@48:sr1` also sampler.ranking_sampling_ratio)
and, timed alone, the read-only RoI-head pass over all RoIs (pooling included), exact and each
approximate one. OHEM's floor = (heuristic + exact read-only pass) / heuristic: the one cost
exact OHEM cannot avoid. Agreement (approximate methods): every round, on the method's own
model and the round's minibatch, its selection against the exact pass's with the same dropout
masks (Jaccard, and the ratio of mean exact losses), untimed.

Timing (wall clock; `--clock cpu`: this process's CPU time, for a busy machine): methods run
round-robin (one iteration each per round) so load drift hits all alike; medians are reported.
Memory: each method in a fresh subprocess. CUDA -> torch.cuda.max_memory_allocated minus what
was allocated before the first step. CPU -> the kernel's peak-RSS mark (VmHWM) is reset once
the model and data are built (/proc/self/clear_refs); peak RSS minus the RSS at that point is the
training steps' working memory (optimizer state included). The ratio of whole-process peaks
(model, data and the torch runtime included) is printed too.

Settings: `paper` = VGG_CNN_M_1024 trunk (from-scratch weights) at 600 x 800 px, 2000
proposals per image, N = 2, B = 128, roi_pool; `cpu` = configs/local.yaml (small_vggm, 128 px,
~400 proposals per image, roi_align), on real minibatches of the synthetic small set.

    .venv/bin/python benchmarks/ohem_overhead.py --settings cpu,paper --iters 10
    .venv/bin/python benchmarks/ohem_overhead.py --settings cpu,paper --threads 1 --clock cpu \
        --methods heuristic,ohem,ohem_fast,ohem_lowrank,ohem_channels --iters 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohem_tune.config import Config, build_config, load_config  # noqa: E402
from ohem_tune.data.records import Minibatch  # noqa: E402
from ohem_tune.engine.step import forward_minibatch  # noqa: E402
from ohem_tune.modeling import build_model  # noqa: E402
from ohem_tune.modeling.matching import match_minibatch  # noqa: E402
from ohem_tune.samplers import RankingPass, build_sampler  # noqa: E402
from ohem_tune.samplers.ranking import agreement, build_ranking_pass  # noqa: E402
from ohem_tune.solver import build_optimizer  # noqa: E402
from ohem_tune.tracking_keys import RANKING_JACCARD, RANKING_LOSS_RATIO  # noqa: E402

CLOCK = time.perf_counter  # --clock cpu: time.process_time (CPU seconds of this process)

METHODS = {  # name -> (sampler, pool strategy, sampler.ranking)
    "heuristic": ("heuristic", "repool", "exact"),
    "ohem": ("ohem", "repool", "exact"),
    "ohem_reuse": ("ohem", "reuse", "exact"),
    "naive": ("ohem", "naive", "exact"),
    "ohem_fast": ("ohem", "repool", "fast"),
    "ohem_lowrank": ("ohem", "repool", "lowrank"),
    "ohem_channels": ("ohem", "repool", "channels"),
}
RANKING_DTYPE = "bfloat16"  # --ranking-dtype: the approximate methods' matmul precision


def parse_method(method: str) -> tuple[str, str, str, dict]:
    """'ohem_channels@48:sr1' -> (sampler, strategy, ranking, {ranking_rank: 48,
    ranking_sampling_ratio: 1}); @rank for lowrank / channels, :srN for any approximation."""
    spec, _, ratio = method.partition(":")
    name, _, rank = spec.partition("@")
    if name not in METHODS:
        raise SystemExit(f"--methods: unknown method '{name}'; choose from {', '.join(METHODS)}")
    sampler, strategy, ranking = METHODS[name]
    knobs: dict = {}
    if rank:
        if ranking not in ("lowrank", "channels"):
            raise SystemExit(f"--methods: '{method}': only lowrank and channels take @rank")
        knobs["ranking_rank"] = int(rank)
    if ratio:
        if ranking == "exact" or not ratio.startswith("sr"):
            raise SystemExit(f"--methods: '{method}': ':srN' (e.g. :sr1) follows an approximation")
        knobs["ranking_sampling_ratio"] = int(ratio[2:])
    return sampler, strategy, ranking, knobs


# ----------------------------------------------------------------------------- settings
def paper_setting(num_batches: int) -> tuple[Config, list[Minibatch], int]:
    """VGG_CNN_M_1024-like trunk at the paper's image size with ~2000 RoIs per image."""
    cfg = build_config(
        {
            "model": {"backbone": "vgg_cnn_m_1024", "fc_dim": 4096, "fc7_dim": 1024},
            "sampler": {"rois_per_batch": 128, "bg_lo": 0.1},
            "solver": {"ims_per_batch": 2, "lr": 0.001},
        }
    )
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(num_batches):
        h, w = 600, 800
        rois, gts, labels = [], [], []
        for _ in range(2):
            n_gt = 3
            xy = torch.rand(n_gt, 2, generator=gen) * torch.tensor([w - 200.0, h - 200.0])
            wh = 60 + torch.rand(n_gt, 2, generator=gen) * 140
            gt = torch.cat([xy, xy + wh], 1)
            # 500 proposals jittered around the objects (fg and near-miss bg), 1500 anywhere
            near = gt.repeat(500 // n_gt + 1, 1)[:500]
            near = near + torch.randn(500, 4, generator=gen) * 0.25 * wh.repeat(2, 1).mean()
            pxy = torch.rand(1500, 2, generator=gen) * torch.tensor([w - 40.0, h - 40.0])
            pwh = 16 + torch.rand(1500, 2, generator=gen) * 300
            anywhere = torch.cat([pxy, pxy + pwh], 1)
            props = torch.cat([near, anywhere])
            props[:, 0::2] = props[:, 0::2].clamp(0, w - 1)
            props[:, 1::2] = props[:, 1::2].clamp(0, h - 1)
            props[:, 2:] = torch.maximum(props[:, 2:], props[:, :2] + 1)
            rois.append(torch.cat([gt, props]))
            gts.append(gt)
            labels.append(torch.randint(1, 21, (n_gt,), generator=gen))
        batches.append(
            Minibatch(
                images=torch.randn(2, 3, h, w, generator=gen) * 50,
                image_sizes=[(h, w)] * 2,
                scales=[1.0, 1.0],
                rois=rois,
                gt_boxes=gts,
                gt_labels=labels,
                record_indices=[0, 1],
            )
        )
    return cfg, batches, 20


def cpu_setting(num_batches: int) -> tuple[Config, list[Minibatch], int]:
    """configs/local.yaml on real minibatches of the synthetic small set (loaded up front)."""
    from ohem_tune.data.build import build_dataset
    from ohem_tune.data.loader import TrainLoader

    cfg = load_config(ROOT / "configs" / "local.yaml", ["dataset.num_workers=0"])
    dataset = build_dataset(cfg, "train")
    with TrainLoader(dataset, cfg, seed=0) as loader:
        batches = [next(loader) for _ in range(num_batches)]
    return cfg, batches, dataset.num_classes


SETTINGS = {"paper": (paper_setting, 20), "cpu": (cpu_setting, 4)}


# ----------------------------------------------------------------------------- measurement
class Runner:
    """One method's model + optimizer on a device, stepping through the shared batches."""

    def __init__(self, cfg: Config, num_classes: int, method: str, device: torch.device):
        sampler_name, self.strategy, ranking, knobs = parse_method(method)
        cfg = cfg.model_copy(deep=True)
        cfg.sampler.name = sampler_name
        if ranking != "exact":
            cfg.sampler.ranking = ranking
            cfg.sampler.ranking_dtype = RANKING_DTYPE
            for key, value in knobs.items():
                setattr(cfg.sampler, key, value)
        self.approximate = ranking != "exact"
        torch.manual_seed(0)
        self.model = build_model(cfg, num_classes).to(device).train()
        self.optimizer = build_optimizer(self.model, cfg.solver)
        self.sampler = build_sampler(cfg.sampler, cfg.solver.ims_per_batch)
        self.cfg = cfg
        self.device = device

    def step(self, batch: Minibatch) -> float:
        start = CLOCK()
        out = forward_minibatch(
            self.model, batch, self.sampler, self.cfg.sampler.fg_thresh, self.strategy
        )
        out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        _sync(self.device)
        return CLOCK() - start

    def ranking_pass(self, batch: Minibatch) -> float:
        """This method's read-only RoI-head pass over all RoIs alone (features computed first)."""
        with torch.no_grad():
            features = self.model.features(batch.images)
        targets = match_minibatch(batch.rois, batch.gt_boxes, batch.gt_labels, 0.5, batch.scales)
        norm = torch.zeros_like(targets.targets)
        _sync(self.device)
        start = CLOCK()
        build_ranking_pass(self.cfg.sampler, self.model, features, targets, norm).losses()
        _sync(self.device)
        return CLOCK() - start

    def agreement(self, batch: Minibatch) -> dict[str, float]:
        """Jaccard and loss ratio of this method's selection vs the exact pass's (untimed)."""
        with torch.no_grad():
            features = self.model.features(batch.images)
        fg_thresh = self.cfg.sampler.fg_thresh
        targets = match_minibatch(
            batch.rois, batch.gt_boxes, batch.gt_labels, fg_thresh, batch.scales
        )
        fg = (targets.labels > 0)[:, None].to(targets.targets.dtype)
        norm = self.model.normalize_targets(targets.targets, targets.labels) * fg
        approx = build_ranking_pass(self.cfg.sampler, self.model, features, targets, norm)
        chosen = self.sampler.select(targets, approx).indices
        return {k: float(v) for k, v in agreement(self.sampler, approx, chosen).items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so setup (data, model) does not mask the step."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def applicable(setting: str, methods: list[str]) -> list[str]:
    """`methods` less ohem_channels where the setting pools with roi_pool (it needs roi_align)."""
    if setting == "paper":  # roi_pool
        skipped = [m for m in methods if parse_method(m)[2] == "channels"]
        if skipped:
            print(f"{setting}: skipping {', '.join(skipped)} (channels needs roi_align)")
        return [m for m in methods if m not in skipped]
    return methods


def time_methods(
    setting: str, methods: list[str], iters: int, warmup: int, device: torch.device
) -> dict:
    build, n_batches = SETTINGS[setting]
    cfg, batches, k = build(n_batches)
    batches = [b.to(device) for b in batches]
    runners = {m: Runner(cfg, k, m, device) for m in methods}
    passes = ["ohem", *(m for m in methods if runners[m].approximate)]
    times: dict[str, list[float]] = {m: [] for m in [*methods, *(f"pass:{m}" for m in passes)]}
    agree: dict[str, list[dict[str, float]]] = {m: [] for m in passes[1:]}
    for r in range(warmup + iters):
        batch = batches[r % len(batches)]
        for name, runner in runners.items():
            t = runner.step(batch)
            if r >= warmup:
                times[name].append(t)
        for name in passes:
            t = runners[name].ranking_pass(batch)
            if r >= warmup:
                times[f"pass:{name}"].append(t)
                if name != "ohem":
                    agree[name].append(runners[name].agreement(batch))
    med = {k: statistics.median(v) for k, v in times.items()}
    med["ranking_pass"] = med["pass:ohem"]
    mean_agree = {
        m: {key: statistics.mean(a[key] for a in v) for key in v[0]} for m, v in agree.items()
    }
    rois = sum(r.shape[0] for r in batches[0].rois)
    return {
        "median_s": med,
        "agreement": mean_agree,
        "rois_per_batch": rois,
        "image_hw": list(batches[0].images.shape[2:]),
    }


def memory_child(setting: str, method: str, iters: int, device: torch.device) -> dict:
    build, n_batches = SETTINGS[setting]
    cfg, batches, k = build(n_batches)
    batches = [b.to(device) for b in batches]
    runner = Runner(cfg, k, method, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        if not _reset_peak_rss():
            raise SystemExit("cannot reset the peak RSS (/proc/self/clear_refs); Linux only")
        base = _status_kib("VmRSS") * 1024
    for i in range(iters):
        runner.step(batches[i % len(batches)])
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _status_kib("VmHWM") * 1024
    return {"base": base, "peak": peak}


def measure_memory(
    setting: str, methods: list[str], iters: int, device: torch.device
) -> dict[str, dict]:
    out = {}
    for method in methods:
        cmd = [sys.executable, __file__, "--child", setting, method, "--iters", str(iters)]
        cmd += ["--device", device.type, "--threads", str(torch.get_num_threads())]
        cmd += ["--ranking-dtype", RANKING_DTYPE]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def report(setting: str, timing: dict, memory: dict[str, dict], device: torch.device) -> dict:
    med = timing["median_s"]
    heur = med["heuristic"]
    floor = (heur + med["ranking_pass"]) / heur
    work = {m: v["peak"] - v["base"] for m, v in memory.items()}
    rows = []
    for m in memory:
        agree = timing["agreement"].get(m, {})
        rows.append(
            {
                "method": m,
                "sec_per_iter": round(med[m], 4),
                "time_ratio": round(med[m] / heur, 3),
                "floor_ratio": round(med[m] / heur / floor, 3),
                "ranking_pass_s": round(med[f"pass:{m}"], 4) if f"pass:{m}" in med else None,
                "jaccard": round(agree[RANKING_JACCARD], 3) if agree else None,
                "loss_ratio": round(agree[RANKING_LOSS_RATIO], 4) if agree else None,
                "mem_ratio_working": round(work[m] / work["heuristic"], 3),
                "mem_ratio_total": round(memory[m]["peak"] / memory["heuristic"]["peak"], 3),
                "peak_gb": round(memory[m]["peak"] / 2**30, 3),
                "working_gb": round(work[m] / 2**30, 3),
            }
        )
    summary = {
        "setting": setting,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "clock": "cpu" if CLOCK is time.process_time else "wall",
        "ranking_dtype": RANKING_DTYPE,
        "rois_per_minibatch": timing["rois_per_batch"],
        "image_hw": timing["image_hw"],
        "ranking_pass_s": round(med["ranking_pass"], 4),
        "ohem_floor": round(floor, 3),
        "ohem_vs_floor": round(med["ohem"] / heur / floor, 3),
        "rows": rows,
    }
    print(f"\n## {setting} ({summary['device']}, {summary['threads']} threads, "
          f"{summary['clock']} clock, {timing['rois_per_batch']} RoIs / 2 images "
          f"{timing['image_hw']}; approximate passes in {RANKING_DTYPE})")  # fmt: skip
    print("| method | s/iter | time / heuristic | time / exact floor | ranking pass s | "
          "Jaccard | loss ratio | working mem / heuristic | peak / heuristic |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        cells = [
            r["method"], f"{r['sec_per_iter']:.4f}", f"{r['time_ratio']:.3f}",
            f"{r['floor_ratio']:.3f}", _cell(r["ranking_pass_s"], 4), _cell(r["jaccard"], 3),
            _cell(r["loss_ratio"], 4), f"{r['mem_ratio_working']:.3f}",
            f"{r['mem_ratio_total']:.3f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print(f"read-only pass alone: {med['ranking_pass']:.4f} s; OHEM floor {floor:.3f}x; "
          f"OHEM / floor = {summary['ohem_vs_floor']:.3f} (target <= 1.10); "
          f"OHEM below naive: {med['ohem'] < med.get('naive', float('inf'))}")  # fmt: skip
    return summary


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def chunk_probe(setting: str, rois_per_image: int, device: torch.device) -> None:
    """Time the read-only pass over the first `rois_per_image` RoIs per image per chunk size."""
    build, _ = SETTINGS[setting]
    cfg, batches, k = build(1)
    batch = batches[0].to(device)
    batch.rois = [r[:rois_per_image] for r in batch.rois]
    runner = Runner(cfg, k, "ohem", device)
    with torch.no_grad():
        features = runner.model.features(batch.images)
    targets = match_minibatch(batch.rois, batch.gt_boxes, batch.gt_labels, 0.5, batch.scales)
    norm = torch.zeros_like(targets.targets)
    auto = RankingPass(runner.model, features, targets, norm).auto_chunk_size(features)
    print(f"\n## ranking-pass chunks, {setting}: {len(targets)} RoIs, auto chunk = {auto}")
    print("| chunk (RoIs) | seconds (best of 2) |")
    print("| --- | --- |")
    for chunk in (64, 128, 256, 512, len(targets)):
        best = float("inf")
        for _ in range(2):
            start = CLOCK()
            RankingPass(runner.model, features, targets, norm, chunk_size=chunk).losses()
            _sync(device)
            best = min(best, CLOCK() - start)
        print(f"| {chunk} | {best:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default="cpu,paper")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per method")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--mem-iters", type=int, default=3)
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="subset of " + ",".join(METHODS)
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="cpu: this process's CPU seconds (robust on a busy machine; use with --threads 1)",
    )
    parser.add_argument(
        "--ranking-dtype", default="bfloat16", choices=["float32", "bfloat16"],
        help="sampler.ranking_dtype of the approximate methods",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.add_argument(
        "--chunk-probe", type=int, default=0, metavar="R",
        help="only time the ranking pass per chunk size over R RoIs per image",
    )  # fmt: skip
    parser.add_argument("--child", nargs=2, metavar=("SETTING", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK, RANKING_DTYPE
    RANKING_DTYPE = args.ranking_dtype
    if args.clock == "cpu" and device.type == "cpu":
        CLOCK = time.process_time
    if args.child:
        print(json.dumps(memory_child(*args.child, args.iters, device)))
        return
    if args.chunk_probe:
        for setting in args.settings.split(","):
            chunk_probe(setting, args.chunk_probe, device)
        return
    methods = args.methods.split(",")
    for method in methods:
        parse_method(method)
    if methods[0] != "heuristic" or "ohem" not in methods:
        raise SystemExit("--methods must start with heuristic and include ohem")
    summaries = []
    for setting in args.settings.split(","):
        these = applicable(setting, methods)
        timing = time_methods(setting, these, args.iters, args.warmup, device)
        memory = measure_memory(setting, these, args.mem_iters, device)
        summaries.append(report(setting, timing, memory, device))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1))


if __name__ == "__main__":
    main()
