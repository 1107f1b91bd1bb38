"""A rough cost model for --dry-run and for launching the longest trials first.

Sec/iter comes from measurements: on GPU, the paper's Titan X figures at 600 px; on CPU, this
project's calibration of the small trunks at 128 px on one thread (docs/orchestration.md).
Both are scaled by image area and images per batch. An estimate, not a promise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ohem_tune.config import Config

# (trunk family, sampler family) -> sec/iter at the reference size with N = 2.
# GPU: the paper (Titan X, 600 px). "all" (B = 2048) is not in the paper: taken as OHEM's x1.2.
_GPU_600 = {
    ("vgg16", "heuristic"): 0.57,
    ("vgg16", "ohem"): 0.87,
    ("vgg16", "all"): 1.05,
    ("vggm", "heuristic"): 0.13,
    ("vggm", "ohem"): 0.22,
    ("vggm", "all"): 0.27,
    ("small", "heuristic"): 0.03,
    ("small", "ohem"): 0.05,
    ("small", "all"): 0.06,
}
# CPU, one thread, 128 px, N = 2: CPU seconds per iteration of the local profile's trunks,
# measured with `python benchmarks/orchestration_efficiency.py --calibrate` (paper_ablation and
# ohem_fast specs; 2-core Intel Xeon, AVX-512, after the separable roi_align backward;
# docs/orchestration.md). "ohem_approx": OHEM with an approximate ranking pass (sampler.ranking).
_CPU_128 = {
    ("vgg16", "heuristic"): 0.20,
    ("vgg16", "ohem"): 0.28,
    ("vgg16", "ohem_approx"): 0.22,
    ("vgg16", "all"): 0.32,
    ("vggm", "heuristic"): 0.12,
    ("vggm", "ohem"): 0.22,
    ("vggm", "ohem_approx"): 0.14,
    ("vggm", "all"): 0.32,
    ("tiny", "heuristic"): 0.05,
    ("tiny", "ohem"): 0.07,
    ("tiny", "ohem_approx"): 0.07,
    ("tiny", "all"): 0.10,
}
_CPU_EVAL_PER_IMAGE_128 = 0.065  # CPU seconds per test image and scale, one thread, 128 px
_GPU_EVAL_PER_IMAGE_600 = 0.15
_TRIAL_OVERHEAD_S = 4.0  # data loading, model build, MLflow, Tune reporting
_FULL_DEFAULT_TEST_IMAGES = {"synthetic": None, "voc": 4952, "coco": 5000}


@dataclass(frozen=True)
class TrialCost:
    """Estimated cost of one trial."""

    sec_per_iter: float
    train_seconds: float
    eval_seconds: float
    device: str  # "gpu" or "cpu"

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.eval_seconds + _TRIAL_OVERHEAD_S


def _families(cfg: Config) -> tuple[str, str]:
    backbone = cfg.model.backbone
    trunk = {"vgg16": "vgg16", "resnet50": "vgg16", "vgg_cnn_m_1024": "vggm"}.get(backbone, "")
    if not trunk:
        trunk = {"small_vgg16": "vgg16", "small_vggm": "vggm", "tiny": "tiny"}.get(backbone, "vggm")
    name = cfg.sampler.name
    sampler = "all" if name == "all_rois" else "ohem" if name.startswith("ohem") else "heuristic"
    if sampler == "ohem" and cfg.sampler.ranking != "exact":
        sampler = "ohem_approx"
    return trunk, sampler


def _test_images(cfg: Config) -> int:
    if cfg.test.max_images:
        return cfg.test.max_images
    if cfg.dataset.format == "synthetic":
        from_preset = {"tiny": 8, "small": 100, "paper": 5000}
        return cfg.dataset.synthetic.num_test or from_preset.get(cfg.dataset.synthetic.preset, 100)
    return _FULL_DEFAULT_TEST_IMAGES.get(cfg.dataset.format) or 5000


def estimate_trial(cfg: Config, resources: Any) -> TrialCost:
    """Seconds for one trial of `cfg` on the resources it is given."""
    trunk, sampler = _families(cfg)
    n_scale = (0.5 + 0.5 * cfg.solver.ims_per_batch / 2) * cfg.solver.iter_size
    if sampler == "all":  # every RoI gets gradient: cost grows with the images' RoIs
        n_scale = cfg.solver.ims_per_batch / 2 * cfg.solver.iter_size
    scale = sum(cfg.input.scales) / len(cfg.input.scales)
    # the trainer evaluates at every multiple of eval_period below max_iter, then once at the end
    period = cfg.train.eval_period
    evals = 1 + ((cfg.train.max_iter - 1) // period if period else 0)
    test_work = _test_images(cfg) * sum((s / 600) ** 2 for s in cfg.test.scales)
    if cfg.test.iterative_bbox:
        test_work *= 1.5
    if resources.gpu > 0:
        small = trunk == "tiny" or cfg.model.backbone.startswith("small")
        # GPU: approximate ranking is not measured there; priced as exact OHEM
        key = ("small" if small else trunk, "ohem" if sampler == "ohem_approx" else sampler)
        per_iter = _GPU_600[key] * (scale / 600) ** 2 * n_scale / max(resources.gpu, 0.5) ** 0.5
        eval_s = test_work * _GPU_EVAL_PER_IMAGE_600 * evals
        return TrialCost(per_iter, per_iter * cfg.train.max_iter, eval_s, "gpu")
    threads = max(1.0, resources.cpu) ** 0.7
    per_iter = _CPU_128[(trunk, sampler)] * (scale / 128) ** 2 * n_scale / threads
    eval_s = test_work * (600 / 128) ** 2 * _CPU_EVAL_PER_IMAGE_128 * evals / threads
    return TrialCost(per_iter, per_iter * cfg.train.max_iter, eval_s, "cpu")


def schedule_seconds(durations: list[float], slots: int) -> float:
    """Wall time of running `durations` longest-first on `slots` parallel slots."""
    loads = [0.0] * max(1, slots)
    for d in sorted(durations, reverse=True):
        i = loads.index(min(loads))
        loads[i] += d
    return max(loads) if durations else 0.0
