"""How long `ohem-tune report` takes on a SQLite store of 1,000 trial runs (target: < 10 s).

Fills a fresh store with RUNS trial runs (20 variants, 5% failed, per-class AP, cost metrics and a
loss history each) through MlflowClient.log_batch, then times, in one process:
  1. the whole build (`build_report`, all formats) and its phases (read runs, read loss histories),
  2. the CLI end to end (`ohem-tune report ...` in a subprocess: imports included).

    .venv/bin/python benchmarks/report_speed.py [--runs 1000] [--steps 40] [--workdir DIR --reuse]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from ohem_tune import tracking_keys as K  # noqa: E402

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow")
EXPERIMENT = "report_speed"


def fill(uri: str, runs: int, steps: int, variants: int = 20) -> float:
    """Create `runs` trial runs; returns the seconds it took."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    rng = random.Random(0)
    started = time.perf_counter()
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXPERIMENT)
    parent = client.create_run(exp_id, tags={K.TAG_ROLE: "parent"})
    t0 = 1_780_000_000_000
    for i in range(runs):
        v, seed = i % variants, i // variants
        model = "VGGM" if v % 2 == 0 else "VGG16"
        sampler = "heuristic" if v < variants // 2 else "ohem"
        status = "FAILED" if rng.random() < 0.05 else "FINISHED"
        tags = {
            K.TAG_ROLE: "trial",
            "mlflow.parentRunId": parent.info.run_id,
            K.TAG_VARIANT: f"v{v:02d}_{sampler}_{model}",
            K.TAG_VARIANT_ORDER: str(v),
            K.TAG_LABEL: "OHEM" if sampler == "ohem" else "Fast R-CNN",
            K.TAG_MODEL_LABEL: model,
            K.TAG_BASELINE: "true" if v in (0, 1) else "false",
            K.TAG_PAPER_MAP: "67.2",
            K.TAG_SEED: str(seed),
            K.TAG_STATUS: status,
            K.TAG_DEVICE: "cpu",
            K.TAG_HOST: "bench",
        }
        if status == "FAILED":
            tags[K.TAG_ERROR] = "TrainingError: loss is NaN"
        params = {
            "sampler.name": sampler,
            "solver.ims_per_batch": "2",
            "solver.lr": "0.001",
            "sampler.rois_per_batch": "128",
            "sampler.bg_lo": "0.0" if sampler == "ohem" else "0.1",
            "input.scales": "[600]",
            "test.scales": "[600]",
            "test.iterative_bbox": "False",
        }
        start = t0 + i * 60_000
        run = client.create_run(exp_id, start_time=start, tags=tags, run_name=tags[K.TAG_VARIANT])
        metrics = []
        if status == "FINISHED":
            base = 0.6 + 0.01 * v
            metrics += [Metric(K.FINAL_MAP, base + rng.gauss(0, 0.01), start, 0)]
            metrics += [Metric(K.FINAL_MAP_AREA, base + rng.gauss(0, 0.01), start, 0)]
            metrics += [Metric(K.FINAL_SEC_PER_ITER, 0.1 + rng.random() * 0.01, start, 0)]
            metrics += [Metric(K.FINAL_PEAK_MEM_GB, 1.0 + rng.random() * 0.1, start, 0)]
            metrics += [
                Metric(K.FINAL_AP_PREFIX + c, base + rng.gauss(0, 0.05), start, 0) for c in CLASSES
            ]
            metrics += [
                Metric(K.LOSS_PER_ROI_ALL, 1.0 / (1 + s) + rng.random() * 0.01, start, s * 50)
                for s in range(steps)
            ]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.set_terminated(run.info.run_id, status, end_time=start + 50_000)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=40, help="loss-history points per run")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="time the store already in --workdir (skip the fill)"
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="report_speed_"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "mlflow.db"
    uri = f"sqlite:///{db}"
    if args.reuse and db.exists():
        print(f"reusing {uri}")
    else:
        if db.exists():
            db.unlink()
        fill_s = fill(uri, args.runs, args.steps)
        print(f"filled {args.runs} runs x {args.steps} loss points in {fill_s:.1f} s ({uri})")

    from ohem_tune.report import build_report
    from ohem_tune.report.runs import fetch_histories, fetch_runs, find_experiment, open_client

    client = open_client(uri)
    exp_id = find_experiment(client, EXPERIMENT, uri)
    t = time.perf_counter()
    runs = fetch_runs(client, exp_id)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    fetch_histories(
        client, runs.loc[runs["status"] == "FINISHED", "run_id"].tolist(), K.LOSS_PER_ROI_ALL
    )
    hist_s = time.perf_counter() - t

    t = time.perf_counter()
    result = build_report(EXPERIMENT, uri, out=workdir / "reports")
    build_s = time.perf_counter() - t

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    cli = [sys.executable, "-c", "from ohem_tune.cli import main; main()", "report", EXPERIMENT]
    cli += ["--tracking-uri", uri, "--out", str(workdir / "reports_cli")]
    proc = subprocess.run(cli, capture_output=True, text=True)
    cli_s = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"CLI failed:\n{proc.stderr}")

    print(f"read {len(runs)} runs (paged):      {read_s:6.2f} s")
    print(f"read loss histories:          {hist_s:6.2f} s")
    print(f"build_report (all formats):   {build_s:6.2f} s  ({len(result.files)} files)")
    print(f"ohem-tune report (CLI, total): {cli_s:6.2f} s  (target < 10 s)")
    print(f"  of which CPU time (user+sys): {cli_cpu:6.2f} s  (the wall time on an idle machine)")
    print(f"load average (1 min):          {os.getloadavg()[0]:6.2f}  on {os.cpu_count()} cores")
    print(f"CLI / build_report ratio:      {cli_s / build_s:6.2f}x (imports + process start)")


if __name__ == "__main__":
    main()
