"""`evaluate(model, dataset, cfg, device)`: detect on a split and score it (the trainer's entry)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ohem_tune.config import Config
from ohem_tune.data.records import DetectionDataset
from ohem_tune.engine.device import amp_dtype
from ohem_tune.evaluation.detections import Detections, PerImageDetections
from ohem_tune.evaluation.inference import detect_batch
from ohem_tune.evaluation.metrics import compute_metrics
from ohem_tune.evaluation.pyramid import image_batches

DETECTIONS_FILE = "detections.parquet"
METRICS_FILE = "metrics.json"


@dataclass
class EvalResult:
    """eval/* metrics, per-image per-class detections, per-class AP, and what was evaluated."""

    metrics: dict[str, float]
    detections: PerImageDetections  # [image][k] (D, 5) x1, y1, x2, y2, score (label k + 1)
    per_class_ap: dict[str, float]  # of the headline metric (test.metric)
    dataset: DetectionDataset  # the evaluated images (the first test.max_images, if set)
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def mean_ap(self) -> float:
        """The headline metric (eval/mAP)."""
        from ohem_tune.tracking_keys import MAP

        return self.metrics[MAP]

    def table(self) -> Detections:
        """The detections as a flat table (one row per box)."""
        return Detections.from_per_image(self.detections, self.dataset)

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write detections.parquet (one row per box) and metrics.json into out_dir."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        dets_path, metrics_path = out / DETECTIONS_FILE, out / METRICS_FILE
        frame = self.table().to_frame(self.dataset.class_names)
        frame.to_parquet(dets_path, index=False)
        payload = {
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "per_class_ap": {k: _json_float(v) for k, v in self.per_class_ap.items()},
            "num_images": len(self.dataset),
            "num_detections": len(frame),
            "seconds": round(self.seconds, 3),
            **self.info,
        }
        metrics_path.write_text(json.dumps(payload, indent=1))
        return dets_path, metrics_path


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def eval_subset(dataset: DetectionDataset, max_images: int | None) -> DetectionDataset:
    """The first max_images records (all when None): what test.max_images evaluates."""
    if max_images is None or max_images >= len(dataset.records):
        return dataset
    return replace(dataset, records=dataset.records[:max_images])


def detect(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    cfg: Config,
    device: torch.device | str,
) -> PerImageDetections:
    """Run the detector over every record of dataset under inference mode (model mode restored)."""
    device = torch.device(device)
    dtype = amp_dtype(cfg.solver.amp, device)  # bf16 without native support: an error
    was_training = model.training
    model.eval()
    # test images are not padded to a few shapes: cuDNN's autotuner would re-run for each new
    # one (the algorithm it picks changes the speed and the last bits, not what is computed)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    detections: PerImageDetections = []
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype, enabled=dtype is not None):
            for batch in image_batches(dataset.records, cfg):
                detections.extend(detect_batch(model, batch, cfg.test, device))
    finally:
        torch.backends.cudnn.benchmark = benchmark
        model.train(was_training)
    return detections


def evaluate(
    model: torch.nn.Module,
    dataset: DetectionDataset,
    cfg: Config,
    device: torch.device | str,
) -> EvalResult:
    """Detect on the first test.max_images images of dataset (all if unset) and score them."""
    subset = eval_subset(dataset, cfg.test.max_images)
    start = time.perf_counter()
    detections = detect(model, subset, cfg, device)
    seconds = time.perf_counter() - start
    metrics, per_class = compute_metrics(
        Detections.from_per_image(detections, subset), subset, cfg.test.metric
    )
    info = {
        "metric": cfg.test.metric,
        "scales": list(cfg.test.scales),
        "iterative_bbox": cfg.test.iterative_bbox,
        "images_per_second": round(len(subset) / seconds, 3) if seconds > 0 else None,
    }
    return EvalResult(metrics, detections, per_class, subset, seconds, info)
