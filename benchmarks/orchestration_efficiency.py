"""Orchestration efficiency of `ohem-tune run` on the local profile.

Prints, from one real run of a spec:
  - slot utilisation = sum of trial compute time / (wall time x concurrent slots), target >= 0.90
  - time from the command's start to the first trial iteration, target <= 20 s
  - wall time, and the trials' summed CPU time (what the wall time would be on an idle machine
    is about CPU time / slots: shared machines inflate wall time, not CPU time).

  python benchmarks/orchestration_efficiency.py                       # paper_ablation, local
  python benchmarks/orchestration_efficiency.py --spec search_spaces/smoke.yaml
  python benchmarks/orchestration_efficiency.py --calibrate           # CPU s/iter per variant

`--calibrate` trains every variant of the spec's profile for a few iterations in this process on
one thread and prints CPU seconds per iteration and per evaluation: the numbers behind the
local profile's budget and `ohem_tune/orchestration/cost.py`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def calibrate(spec_path: str, profile: str | None, iters: int, overrides: list[str]) -> None:
    import torch

    from ohem_tune.engine.trainer import Trainer
    from ohem_tune.spec import load_spec

    torch.set_num_threads(1)
    spec = load_spec(spec_path)
    trials = spec.expand(profile=profile, seeds=1, overrides=overrides)
    out = Path(tempfile.mkdtemp(prefix="calib_"))
    print(f"{'variant':22s} {'CPU s/iter':>10s} {'CPU s/eval':>10s} {'est. trial CPU s':>16s}")
    total = 0.0
    try:
        for trial in trials:
            cfg = trial.config.model_copy(deep=True)
            full_iters = cfg.train.max_iter
            cfg.train.max_iter = iters
            cfg.train.checkpoint_period = 0
            cfg.train.final_eval = False
            cfg.train.num_threads = 1
            c0 = cpu_seconds()
            trainer = Trainer(cfg, out / trial.variant, resume=False)
            c1 = cpu_seconds()
            trainer.train()
            c2 = cpu_seconds()
            trainer._evaluate()
            c3 = cpu_seconds()
            per_iter = (c2 - c1) / iters
            per_eval = c3 - c2
            est = (c1 - c0) + per_iter * full_iters + per_eval
            total += est
            print(f"{trial.variant:22s} {per_iter:10.3f} {per_eval:10.2f} {est:16.1f}", flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    seeds = len(spec.expand(profile=profile)) // len(trials)
    print(f"all variants x {seeds} seeds: ~{total * seeds / 60:.1f} CPU-minutes of trials")


def measure(args: argparse.Namespace) -> None:
    from rich.console import Console

    from ohem_tune.orchestration.driver import run_plan
    from ohem_tune.orchestration.plan import make_plan
    from ohem_tune.orchestration.summary import print_summary

    start = time.time()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="orch_bench_"))
    plan = make_plan(
        args.spec,
        profile=args.profile,
        seeds=args.seeds,
        overrides=args.set,
        tracking_uri=f"sqlite:///{work}/mlflow.db",
        storage_path=work / "results",
        experiment=f"bench-{int(start)}",
    )
    console = Console()
    summary = run_plan(plan, max_concurrent=args.max_concurrent, console=console,
                       command_start=start)  # fmt: skip
    print_summary(summary, console)
    busy = sum(o.seconds or 0.0 for o in summary.outcomes)
    cpu = sum(o.cpu_seconds or 0.0 for o in summary.outcomes)
    util = summary.slot_utilisation
    first = summary.first_iteration_seconds
    load = os.getloadavg()
    print()
    print(f"spec {args.spec} profile {plan.profile}: {len(summary.outcomes)} trials, "
          f"{summary.slots} slots, {os.cpu_count()} CPUs, load average {load[0]:.1f}")  # fmt: skip
    print(f"wall time                      {summary.wall_seconds:8.1f} s")
    print(f"sum of trial compute time      {busy:8.1f} s")
    print(f"sum of trial CPU time          {cpu:8.1f} s   (idle-machine wall ~ CPU / slots "
          f"= {cpu / max(1, summary.slots) / 60:.1f} min + start-up)")  # fmt: skip
    print(f"slot utilisation               {util:8.3f}   (target >= 0.90)" if util else "n/a")
    print(f"command -> first iteration     {first:8.1f} s (target <= 20 s)" if first else "n/a")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "search_spaces" / "paper_ablation.yaml"))
    parser.add_argument("--profile", default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--max-concurrent", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="keep MLflow and results here")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--iters", type=int, default=20, help="--calibrate: iterations per row")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.calibrate:
        calibrate(args.spec, args.profile, args.iters, args.set)
    else:
        measure(args)


if __name__ == "__main__":
    sys.exit(main())
