"""TrainLoader images/s (0 and 2 workers) beside the images/s the trainer consumes, on `small`.

Run: .venv/bin/python benchmarks/loader_throughput.py [--iters 150] [--train-iters 20]
The trainer's need is measured here (forward + backward + SGD step of the CPU-ablation model on
the same minibatches); if the model stack cannot be built, the stack notes' 0.07 s/iter is used.
Then the loader feeds the real training step and the share of wall time spent waiting for data
is printed. Ratios matter, not absolute numbers: all figures come from this one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from ohem_tune.config import Config, build_config
from ohem_tune.data.build import build_dataset
from ohem_tune.data.loader import TrainLoader

STACK_NOTES_SEC_PER_ITER = 0.07  # heuristic sampler, N=2, 128 px, 2 cores (stack_notes.md)


def small_config(cache: str, workers: int) -> Config:
    """The CPU ablation's data and model settings (128 px synthetic, N=2, B=128)."""
    return build_config(
        {
            "dataset": {
                "synthetic": {"preset": "small", "cache_dir": cache},
                "num_workers": workers,
            },
            "input": {"scales": [128], "max_size": 224},
            "model": {"backbone": "small_vggm", "roi_op": "roi_align", "fc_dim": 256},
            "sampler": {"name": "heuristic", "rois_per_batch": 128},
            "solver": {"ims_per_batch": 2, "lr": 0.01},
            "train": {"device": "cpu"},
        }
    )


def loader_images_per_sec(cfg: Config, dataset, iters: int) -> float:
    loader = TrainLoader(dataset, cfg, seed=0)
    next(loader)  # start the workers outside the timing
    start = time.perf_counter()
    for _ in range(iters):
        next(loader)
    elapsed = time.perf_counter() - start
    loader.close()
    return iters * cfg.solver.ims_per_batch / elapsed


def make_train_step(cfg: Config, num_classes: int):
    """A closure running one real training step on a batch, or None without the model stack."""
    try:
        from ohem_tune.engine.step import forward_minibatch
        from ohem_tune.modeling import build_model
        from ohem_tune.samplers.base import build_sampler
        from ohem_tune.solver.optimizer import build_optimizer
    except ImportError as exc:
        print(f"model stack unavailable ({exc}); using the stack notes' trainer speed")
        return None
    model = build_model(cfg, num_classes).train()
    sampler = build_sampler(cfg.sampler, cfg.solver.ims_per_batch)
    optimizer = build_optimizer(model, cfg.solver)

    def step(batch) -> None:
        out = forward_minibatch(model, batch, sampler, cfg.sampler.fg_thresh)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150, help="loader batches timed per setting")
    parser.add_argument("--train-iters", type=int, default=20, help="training steps timed")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        cfg0 = small_config(cache, workers=0)
        start = time.perf_counter()
        train = build_dataset(cfg0, "train")
        print(f"small preset generated + loaded in {time.perf_counter() - start:.2f} s "
              f"({len(train)} training records with flips)")  # fmt: skip
        rates = {
            w: loader_images_per_sec(small_config(cache, w), train, args.iters) for w in (0, 2)
        }

        step = make_train_step(cfg0, train.num_classes)
        if step is None:
            sec_per_iter, wait_share = STACK_NOTES_SEC_PER_ITER, float("nan")
        else:
            batches = [next(iter(TrainLoader(train, cfg0, seed=1, start_iter=i))) for i in range(4)]
            for b in batches[:2]:
                step(b)  # warm-up
            start = time.perf_counter()
            for i in range(args.train_iters):
                step(batches[i % len(batches)])
            sec_per_iter = (time.perf_counter() - start) / args.train_iters
            loader = TrainLoader(train, small_config(cache, 2), seed=2)
            step(next(loader))
            wait = 0.0
            start = time.perf_counter()
            for _ in range(args.train_iters):
                t = time.perf_counter()
                batch = next(loader)
                wait += time.perf_counter() - t
                step(batch)
            wait_share = wait / (time.perf_counter() - start)
            loader.close()

    need = cfg0.solver.ims_per_batch / sec_per_iter
    print(f"torch threads {args.threads}, N={cfg0.solver.ims_per_batch}, scale 128")
    print(f"trainer consumes      {need:8.1f} images/s ({sec_per_iter:.3f} s/iter)")
    for workers, rate in rates.items():
        print(f"loader, {workers} workers     {rate:8.1f} images/s  = {rate / need:5.1f}x the need")
    notes_need = cfg0.solver.ims_per_batch / STACK_NOTES_SEC_PER_ITER
    for workers, rate in rates.items():
        print(
            f"  vs the stack notes' {STACK_NOTES_SEC_PER_ITER} s/iter ({notes_need:.1f} images/s): "
            f"{workers} workers = {rate / notes_need:.1f}x"
        )
    print(f"time waiting for data while training with 2 workers: {wait_share:.1%}")


if __name__ == "__main__":
    main()
