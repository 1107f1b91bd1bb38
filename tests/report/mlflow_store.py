"""Fill a real MLflow SQLite store with trial runs whose values the report tests compute by hand.

Layout of the known runs (mAP as logged, in [0, 1]):
- frcn_vggm (baseline, VGGM, heuristic, bg_lo 0.1): seeds 0, 1, 2 -> 0.50, 0.52, 0.54; an older
  FAILED seed 0 and an older FINISHED seed 1 (0.99) are superseded by later runs.
- frcn_vgg16 (baseline, VGG16, heuristic): seeds 0, 1 -> 0.60, 0.62.
- ohem_vggm (VGGM, ohem, bg_lo 0): seeds 0, 1, 2 -> 0.55, 0.58, 0.58; seed 3 FAILED (NaN loss).
- ohem_vgg16 (VGG16, ohem): seed 0 -> 0.65 measured on an H100; seed 1 PRUNED.
- ohem_ms_vgg16 (VGG16, ohem, multi-scale train/test, iterative bbox): seeds 0, 1 -> 0.70, 0.72.
The spec (write_spec) adds frcn_bglo0_vggm, which has no runs, and the claims of CLAIMS.
Every finished run logs final/loss_per_roi_all = loss_value(variant, seed, 20) (OHEM half FRCN's)
and an evaluation at each of fill_store's eval_steps (default EVAL_STEPS): eval/mAP =
eval_map(final mAP, step), eval/train_seconds = sec_per_iter(variant, seed) * step, and
final/train_seconds its last time. Equal-time cases against each row's baseline: ohem_vggm is
read between (seeds 1, 2) and at (seed 0) its evaluations; ohem_vgg16 ran on another device;
ohem_ms_vgg16 seed 0 is faster than frcn_vgg16 (clamped to its last evaluation), seed 1 first
evaluates after frcn_vgg16 seed 1 finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ohem_tune import tracking_keys as K

EXPERIMENT = "paper_ablation_test"
T0_MS = 1_780_000_000_000  # a fixed epoch so durations and ordering are known
RUN_SECONDS = 60


@dataclass
class KnownRun:
    variant: str
    seed: int
    status: str = "FINISHED"
    map: float | None = None
    device: str = "cpu"
    error: str | None = None
    extra_metrics: dict[str, float] = field(default_factory=dict)


VARIANTS: dict[str, dict[str, Any]] = {
    "frcn_vggm": {
        "label": "Fast R-CNN",
        "model": "VGGM",
        "baseline": True,
        "paper": 59.6,
        "params": {"sampler.name": "heuristic", "sampler.bg_lo": "0.1"},
    },
    "frcn_vgg16": {
        "label": "Fast R-CNN",
        "model": "VGG16",
        "baseline": True,
        "paper": 67.2,
        "params": {"sampler.name": "heuristic", "sampler.bg_lo": "0.1"},
    },
    "ohem_vggm": {
        "label": "OHEM",
        "model": "VGGM",
        "paper": 62.0,
        "params": {"sampler.name": "ohem", "sampler.bg_lo": "0.0"},
    },
    "ohem_vgg16": {
        "label": "OHEM",
        "model": "VGG16",
        "paper": 69.9,
        "params": {"sampler.name": "ohem", "sampler.bg_lo": "0.0"},
    },
    "ohem_ms_vgg16": {
        "label": "OHEM +M +B",
        "model": "VGG16",
        "paper": 75.1,
        "params": {
            "sampler.name": "ohem",
            "sampler.bg_lo": "0.0",
            "input.scales": "[480, 576, 688]",
            "test.scales": "[480, 576, 688]",
            "test.iterative_bbox": "True",
        },
    },
}
SPEC_ONLY = {
    "frcn_bglo0_vggm": {
        "label": "Removing hard mining heuristic",
        "model": "VGGM",
        "paper": 57.2,
        "set": {"sampler.bg_lo": 0.0, "solver.ims_per_batch": 2, "solver.lr": 0.001},
    }
}
BASE_PARAMS = {
    "solver.ims_per_batch": "2",
    "solver.lr": "0.001",
    "sampler.rois_per_batch": "128",
    "model.backbone": "small_vggm",
    "input.scales": "[600]",
    "test.scales": "[600]",
    "test.iterative_bbox": "False",
    "dataset.format": "synthetic",
    "dataset.test_split": "test",
    "train.max_iter": "120",
}
# Claims over the known runs, one per verdict path (hand-computed in tests/report/test_claims.py):
# ohem_vggm - frcn_vggm = +5, +6, +4 points (seeds 0, 1, 2): mean 5, sd 1, 95% CI [+2.5, +7.5].
CLAIMS = [
    {"label": "OHEM beats FRCN (VGGM)", "variant": "ohem_vggm", "baseline": "frcn_vggm",
     "expect": "better", "paper_delta": 2.4},
    {"label": "OHEM is below FRCN (VGGM)", "variant": "ohem_vggm", "baseline": "frcn_vggm",
     "expect": "worse"},
    {"label": "OHEM within 1 of FRCN (VGGM)", "variant": "ohem_vggm", "baseline": "frcn_vggm",
     "expect": "none", "margin": 1.0},
    {"label": "OHEM within 10 of FRCN (VGGM)", "variant": "ohem_vggm", "baseline": "frcn_vggm",
     "expect": "none", "margin": 10.0},
    {"label": "OHEM within 6 of FRCN (VGGM)", "variant": "ohem_vggm", "baseline": "frcn_vggm",
     "expect": "none", "margin": 6.0},
    {"label": "OHEM beats FRCN (VGG16)", "variant": "ohem_vgg16", "baseline": "frcn_vgg16",
     "expect": "better", "paper_delta": 2.7},
    {"label": "Removing bg_lo hurts FRCN (VGGM)", "variant": "frcn_bglo0_vggm",
     "baseline": "frcn_vggm", "expect": "worse", "paper_delta": -2.4},
    {"label": "OHEM has lower loss per RoI (VGGM)", "variant": "ohem_vggm",
     "baseline": "frcn_vggm", "expect": "better", "metric": "final/loss_per_roi_all"},
]  # fmt: skip

# In creation order; later runs of the same (variant, seed) supersede earlier ones.
RUNS = [
    KnownRun("frcn_vggm", 0, status="FAILED", error="TrainingError: killed by OOM"),
    KnownRun("frcn_vggm", 1, map=0.99),
    KnownRun("frcn_vggm", 0, map=0.50, extra_metrics={"final/AP/cat": 0.40, "final/AP/dog": 0.60}),
    KnownRun("frcn_vggm", 1, map=0.52, extra_metrics={"final/AP/cat": 0.42, "final/AP/dog": 0.62}),
    KnownRun("frcn_vggm", 2, map=0.54, extra_metrics={"final/AP/cat": 0.44, "final/AP/dog": 0.64}),
    KnownRun("frcn_vgg16", 0, map=0.60),
    KnownRun("frcn_vgg16", 1, map=0.62),
    KnownRun("ohem_vggm", 0, map=0.55, extra_metrics={"final/AP/cat": 0.50, "final/AP/dog": 0.60}),
    KnownRun("ohem_vggm", 1, map=0.58, extra_metrics={"final/AP/cat": 0.56, "final/AP/dog": 0.60}),
    KnownRun("ohem_vggm", 2, map=0.58, extra_metrics={"final/AP/cat": 0.56, "final/AP/dog": 0.60}),
    KnownRun("ohem_vggm", 3, status="FAILED", error="TrainingError: loss is NaN at iteration 12"),
    KnownRun("ohem_vgg16", 0, map=0.65, device="NVIDIA H100 80GB HBM3"),
    KnownRun("ohem_vgg16", 1, status="PRUNED"),
    KnownRun("ohem_ms_vgg16", 0, map=0.70, extra_metrics={"final/coco/AP": 0.30}),
    KnownRun("ohem_ms_vgg16", 1, map=0.72, extra_metrics={"final/coco/AP": 0.34}),
]

# sec/iter and peak memory by (variant, seed): FRCN 0.10/0.12 s, OHEM 0.15/0.17 s (VGGM).
COST = {
    ("frcn_vggm", 0): (0.10, 1.0),
    ("frcn_vggm", 1): (0.12, 1.2),
    ("frcn_vggm", 2): (0.11, 1.1),
    ("ohem_vggm", 0): (0.15, 1.5),
    ("ohem_vggm", 1): (0.17, 1.7),
    ("ohem_vggm", 2): (0.16, 1.6),
    ("frcn_vgg16", 0): (0.50, 6.0),
    ("frcn_vgg16", 1): (0.52, 6.2),
    ("ohem_vgg16", 0): (0.30, 7.0),
}
LOSS_STEPS = (0, 10, 20)
EVAL_STEPS = (40, 80, 120)  # the evaluations of every finished run (the last one is final/mAP)
EVAL_GAPS = (0.10, 0.04, 0.0)  # final mAP minus eval/mAP at each of EVAL_STEPS
# seconds per iteration for eval/train_seconds where COST has none (or another is wanted)
TRAIN_SEC_PER_ITER = {("ohem_ms_vgg16", 0): 0.40, ("ohem_ms_vgg16", 1): 1.60}
DEFAULT_SEC_PER_ITER = 0.2
# the ohem_tune.test_protocol tag of every known run (as evaluation.protocol writes it)
PROTOCOL = "voc07 · NMS 0.3 · ≤2000 dets/image · score > 1e-05 · test split"


def loss_value(variant: str, seed: int, step: int) -> float:
    """The logged train/loss_per_roi_all: decays with step; OHEM variants lower."""
    scale = 0.5 if variant.startswith("ohem") else 1.0
    return scale * (1.0 + 0.1 * seed) / (1.0 + step / 10.0)


def eval_map(final_map: float, step: int) -> float:
    """The logged eval/mAP at one of EVAL_STEPS: rising to the run's final mAP."""
    return final_map - EVAL_GAPS[EVAL_STEPS.index(step)]


def sec_per_iter(variant: str, seed: int) -> float:
    """Training seconds per iteration behind eval/train_seconds."""
    cost = COST.get((variant, seed))
    return TRAIN_SEC_PER_ITER.get((variant, seed), cost[0] if cost else DEFAULT_SEC_PER_ITER)


def fill_store(
    tracking_uri: str,
    experiment: str = EXPERIMENT,
    protocols: dict[str, str] | None = None,
    eval_steps: Sequence[int] = EVAL_STEPS,
) -> list[str]:
    """Create the experiment with a parent run and the known trial runs; returns trial run ids.

    protocols: a test-protocol tag per variant instead of PROTOCOL ("" leaves the tag out).
    eval_steps: the steps (of EVAL_STEPS) that log eval/mAP and eval/train_seconds; (120,) is a
    run without periodic evaluations, () one from before eval/train_seconds was logged.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=tracking_uri)
    exp_id = client.create_experiment(experiment)
    parent = client.create_run(exp_id, start_time=T0_MS, tags={K.TAG_ROLE: "parent"})
    order = list(VARIANTS)
    ids = []
    for i, known in enumerate(RUNS):
        meta = VARIANTS[known.variant]
        start = T0_MS + i * 100_000
        tags = {
            K.TAG_ROLE: "trial",
            "mlflow.parentRunId": parent.info.run_id,
            K.TAG_VARIANT: known.variant,
            K.TAG_VARIANT_ORDER: str(order.index(known.variant)),
            K.TAG_LABEL: meta["label"],
            K.TAG_MODEL_LABEL: meta["model"],
            K.TAG_BASELINE: "true" if meta.get("baseline") else "false",
            K.TAG_PAPER_MAP: str(meta["paper"]),
            K.TAG_SEED: str(known.seed),
            K.TAG_STATUS: known.status,
            K.TAG_DEVICE: known.device,
            K.TAG_HOST: "testhost",
            K.TAG_PROFILE: "cpu_test",
        }
        if known.error:
            tags[K.TAG_ERROR] = known.error
        protocol = (protocols or {}).get(known.variant, PROTOCOL)
        if protocol:
            tags[K.TAG_TEST_PROTOCOL] = protocol
        run = client.create_run(exp_id, start_time=start, tags=tags, run_name=known.variant)
        params = {**BASE_PARAMS, **meta["params"]}
        metrics = []
        if known.map is not None:
            metrics.append(Metric(K.FINAL_MAP, known.map, start, 0))
            metrics += [Metric(k, v, start, 0) for k, v in known.extra_metrics.items()]
            metrics += [
                Metric(K.LOSS_PER_ROI_ALL, loss_value(known.variant, known.seed, s), start, s)
                for s in LOSS_STEPS
            ]
            final_loss = loss_value(known.variant, known.seed, LOSS_STEPS[-1])
            metrics.append(Metric(K.FINAL_LOSS_PER_ROI_ALL, final_loss, start, LOSS_STEPS[-1]))
            spi = sec_per_iter(known.variant, known.seed)
            metrics.append(Metric(K.FINAL_TRAIN_SECONDS, spi * EVAL_STEPS[-1], start, 0))
            for step in eval_steps:
                metrics.append(Metric(K.MAP, eval_map(known.map, step), start, step))
                metrics.append(Metric(K.EVAL_TRAIN_SECONDS, spi * step, start, step))
        cost = COST.get((known.variant, known.seed))
        if cost is not None and known.status == "FINISHED":
            metrics += [
                Metric(K.FINAL_SEC_PER_ITER, cost[0], start, 0),
                Metric(K.FINAL_PEAK_MEM_GB, cost[1], start, 0),
            ]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        mlflow_status = (
            "FAILED"
            if known.status == "FAILED"
            else ("KILLED" if known.status == "PRUNED" else "FINISHED")
        )
        client.set_terminated(run.info.run_id, mlflow_status, end_time=start + RUN_SECONDS * 1000)
        ids.append(run.info.run_id)
    parent_end = T0_MS + len(RUNS) * 100_000 + RUN_SECONDS * 1000
    client.set_terminated(parent.info.run_id, "FINISHED", end_time=parent_end)
    return ids


def write_spec(
    path: Path, tables: list[str] | None = None, claims: list[dict[str, Any]] | None = None
) -> Path:
    """A spec YAML naming the known variants plus one without runs (frcn_bglo0_vggm, 3rd row),
    with `claims` (default: CLAIMS; [] for none)."""
    import yaml

    variants = []
    for name, meta in VARIANTS.items():
        entry = {"name": name, "label": meta["label"], "model": meta["model"]}
        entry["paper"] = meta["paper"]
        if meta.get("baseline"):
            entry["baseline"] = True
        entry["set"] = dict(meta["params"])
        variants.append(entry)
    extra = {"name": "frcn_bglo0_vggm", **SPEC_ONLY["frcn_bglo0_vggm"]}
    variants.insert(2, extra)
    tree: dict[str, Any] = {"name": EXPERIMENT, "variants": variants}
    if tables is not None:
        tree["report"] = {"tables": tables}
    claims = CLAIMS if claims is None else claims
    if claims:
        tree["claims"] = claims
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def run_report_cli(monkeypatch: Any, *args: str) -> int:
    """`ohem-tune report ARGS` in this process; its exit code."""
    import sys

    import pytest

    from ohem_tune.cli import main

    monkeypatch.setattr(sys, "argv", ["ohem-tune", "report", *args])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    return int(exc.value.code or 0)
