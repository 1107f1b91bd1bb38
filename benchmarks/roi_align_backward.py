"""CPU roi_align: torchvision's backward vs the separable one (modeling/roi_align_grad.py).

Two levels, each measured side by side in one run (round-robin, medians, this process's CPU
time by default so other load on the machine hurts both arms alike):
  op    roi_align forward + backward at the local profile's shapes (small trunks, 128 px images:
        16 x 16 to 16 x 28 feature maps, 160 / 224 channels) for B = 128 RoIs (the heuristic's
        and OHEM's minibatch) and every RoI of two images (all-RoIs, ~800);
  step  one SGD iteration of configs/local.yaml on real minibatches of the synthetic small set
        for the heuristic, OHEM and all-RoIs samplers (forward, backward, update).
The torchvision arm runs the same code with the pooler's separable path switched off.

    .venv/bin/python benchmarks/roi_align_backward.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/roi_align_backward.py --iters 10 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torchvision.ops import roi_align

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohem_tune.config import load_config  # noqa: E402
from ohem_tune.engine.step import forward_minibatch  # noqa: E402
from ohem_tune.modeling import build_model, roi_head  # noqa: E402
from ohem_tune.modeling.roi_align_grad import roi_align_separable  # noqa: E402
from ohem_tune.solver import build_optimizer  # noqa: E402

CLOCK = time.process_time


def _torchvision(features, rois, output_size, spatial_scale, sampling_ratio):
    return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned=True)


@contextlib.contextmanager
def backward_impl(name: str):
    """Route RoIPooler's CPU training path to `name`: 'separable' (as shipped) or 'torchvision'."""
    saved = roi_head.roi_align_separable
    roi_head.roi_align_separable = roi_align_separable if name == "separable" else _torchvision
    try:
        yield
    finally:
        roi_head.roi_align_separable = saved


def op_level(iters: int) -> None:
    print("op: roi_align forward + backward, median CPU ms (7x7, sampling ratio 2, stride 8)")
    head = ("channels", "map", "RoIs", "torchvision", "separable", "ratio")
    print("{:>8} {:>7} {:>5} {:>12} {:>10} {:>6}".format(*head))
    gen = torch.Generator().manual_seed(0)
    for channels, (height, width), num in [
        (224, (16, 16), 128), (224, (16, 16), 800), (160, (16, 28), 128), (160, (16, 28), 800),
    ]:  # fmt: skip
        features = torch.randn(2, channels, height, width, generator=gen)
        xy = torch.rand(num, 2, generator=gen) * torch.tensor([8.0 * width - 24, 8.0 * height - 24])
        wh = 4 + torch.rand(num, 2, generator=gen) * 60
        rois = torch.cat([torch.randint(0, 2, (num, 1), generator=gen).float(), xy, xy + wh], 1)
        grad = torch.randn(num, channels, 7, 7, generator=gen)
        arms = {"torchvision": _torchvision, "separable": roi_align_separable}
        times: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(iters + 1):  # the first round warms up
            for name, op in arms.items():
                leaf = features.clone().requires_grad_()
                start = CLOCK()
                op(leaf, rois, 7, 1 / 8, 2).backward(grad)
                times[name].append(CLOCK() - start)
        tv, sep = (statistics.median(times[n][1:]) for n in arms)
        print(f"{channels:>8} {height}x{width:<4} {num:>5} {tv * 1e3:>12.1f} {sep * 1e3:>10.1f} "
              f"{tv / sep:>5.2f}x")  # fmt: skip


def step_level(iters: int) -> None:
    from ohem_tune.data.build import build_dataset
    from ohem_tune.data.loader import TrainLoader
    from ohem_tune.samplers import build_sampler

    cfg = load_config(ROOT / "configs" / "local.yaml", ["dataset.num_workers=0"])
    dataset = build_dataset(cfg, "train")
    with TrainLoader(dataset, cfg, seed=0) as loader:
        batches = [next(loader) for _ in range(4)]
    print("\nstep: one SGD iteration of configs/local.yaml (small_vggm), median CPU s")
    print(f"{'sampler':>10} {'torchvision':>12} {'separable':>10} {'ratio':>6}")
    for sampler_name, bg_lo in [("heuristic", 0.1), ("ohem", 0.0), ("all_rois", 0.0)]:
        arms = {}
        for impl in ("torchvision", "separable"):
            run_cfg = cfg.model_copy(deep=True)
            run_cfg.sampler.name, run_cfg.sampler.bg_lo = sampler_name, bg_lo
            torch.manual_seed(0)
            model = build_model(run_cfg, dataset.num_classes).train()
            sampler = build_sampler(run_cfg.sampler, run_cfg.solver.ims_per_batch)
            arms[impl] = (model, build_optimizer(model, run_cfg.solver), sampler, run_cfg)
        times: dict[str, list[float]] = {name: [] for name in arms}
        for i in range(iters + 1):
            batch = batches[i % len(batches)]
            for impl, (model, optimizer, sampler, run_cfg) in arms.items():
                with backward_impl(impl):
                    start = CLOCK()
                    fg_thresh = run_cfg.sampler.fg_thresh
                    out = forward_minibatch(model, batch, sampler, fg_thresh, "repool")
                    out.loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    times[impl].append(CLOCK() - start)
        tv, sep = (statistics.median(times[n][1:]) for n in arms)
        print(f"{sampler_name:>10} {tv:>12.3f} {sep:>10.3f} {tv / sep:>5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a Ray trial: 1)")
    parser.add_argument("--levels", default="op,step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}), {args.threads} thread(s)")  # fmt: skip
    levels = args.levels.split(",")
    if "op" in levels:
        op_level(args.iters)
    if "step" in levels:
        step_level(args.iters)


if __name__ == "__main__":
    main()
