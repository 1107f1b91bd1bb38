"""Trainer: the iteration loop of Fast R-CNN with a pluggable RoI sampler.

Builds data, model, sampler and solver from a Config; logs train/* metrics every
`train.log_period` iterations (hooks + metrics.parquet), evaluates every `train.eval_period`
and at the end, checkpoints atomically and resumes bit-for-bit on CPU from `checkpoints/last`.
Per-iteration losses and sampler statistics stay on the device until a log period (or a
checkpoint or evaluation) reads them; memory peaks count training only, never evaluations.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import random
import resource
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ohem_tune import tracking_keys as K
from ohem_tune.config import Config
from ohem_tune.engine.checkpoint import (
    last_checkpoint,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ohem_tune.engine.device import (
    amp_dtype,
    configure_cuda_backends,
    cuda_unavailable_reason,
    gpus_hidden,
    nvidia_driver_version,
)
from ohem_tune.engine.hooks import Hook
from ohem_tune.engine.period import PeriodStats, Value
from ohem_tune.engine.phases import PHASES, PhaseClock
from ohem_tune.engine.step import forward_minibatch, resolve_pool_strategy
from ohem_tune.errors import ConfigError, TrainingError
from ohem_tune.modeling import build_model
from ohem_tune.modeling.target_stats import compute_target_stats
from ohem_tune.samplers import build_sampler
from ohem_tune.solver import build_lr_scheduler, build_optimizer

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.parquet"
CONFIG_FILE = "config.yaml"
CUDNN_SIZE_DIVISIBILITY = 32  # pad training images so cuDNN autotunes a few shapes, not each one
_GIB = 1024**3
PHASE_KEYS = {phase: f"{K.PHASE_PREFIX}{phase}_s" for phase in PHASES}


def resolve_device(name: str) -> torch.device:
    """auto -> the first visible CUDA device (CUDA_VISIBLE_DEVICES, as Ray sets it) or CPU.

    auto on a machine whose NVIDIA driver answers but where torch cannot use CUDA (a CPU build,
    a driver older than the wheel's CUDA) is an error, not a quiet CPU run; GPUs hidden on
    purpose (CUDA_VISIBLE_DEVICES empty or -1) mean the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError(
            f"train.device: 'cuda' requested but CUDA is unavailable: {cuda_unavailable_reason()}"
        )
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        driver = None if gpus_hidden() else nvidia_driver_version()
        if driver is not None:
            raise TrainingError(
                f"train.device: auto: an NVIDIA driver ({driver}) answers here but torch cannot "
                f"use CUDA: {cuda_unavailable_reason()}; or set train.device: cpu to train on "
                "the CPU on purpose"
            )
        name = "cpu"
    return torch.device(name)


def available_cpus() -> int:
    """CPUs this process may use: OMP_NUM_THREADS when set (Ray sets it), else its affinity."""
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


_PROC_STATUS = Path("/proc/self/status")


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak (of a run, or after an evaluation): no older peak may count.

    CUDA: cached free blocks go back to the driver first (else they count as reserved), then
    torch's peak counters restart. CPU on Linux: the heap pages glibc kept are handed back first
    (else they count toward this run), then writing 5 to /proc/self/clear_refs resets VmHWM.
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    _release_free_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: fall back to the process-lifetime peak


def _release_free_heap() -> None:
    """glibc keeps freed heap pages mapped: a process reused for run after run grows (~0.4 GiB
    over 8 short runs, measured) and each run's peak would include the ones before it."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (macOS, musl): nothing to hand back


def peak_reserved_gb(device: torch.device) -> float | None:
    """CUDA: max reserved by torch's caching allocator since reset (GiB). CPU: None (no cache)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_reserved(device) / _GIB
    return None


def peak_memory_gb(device: torch.device) -> float:
    """CUDA: max allocated by torch. CPU: peak resident set size since reset_peak_memory (GiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / _GIB
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / _GIB  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / _GIB  # ru_maxrss is KiB


class Trainer:
    """Fast R-CNN training for one Config into `out_dir` (see docs/ARCHITECTURE.md, "Trainer")."""

    def __init__(
        self, cfg: Config, out_dir: Path | str, hooks: Sequence[Hook] = (), resume: bool = True
    ):
        from ohem_tune.data.build import build_dataset

        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.hooks = list(hooks)
        self.device = resolve_device(cfg.train.device)
        torch.set_num_threads(cfg.train.num_threads or available_cpus())
        self.backend_settings = configure_cuda_backends(
            self.device, cfg.train.deterministic, cfg.train.matmul_precision
        )
        self.amp_dtype = self._amp_dtype()  # before any data or model work: fail fast
        seed_everything(cfg.train.seed)
        self.sampler = build_sampler(cfg.sampler, cfg.solver.ims_per_batch)  # fail fast on names

        self.train_set = build_dataset(cfg, "train", for_training=True)
        self.class_names = list(self.train_set.class_names)
        self.model = build_model(cfg, len(self.class_names))
        if cfg.model.normalize_targets:
            means, stds = compute_target_stats(
                self.train_set.records,
                len(self.class_names),
                cfg.sampler.fg_thresh,
                cfg.model.bbox_reg_stds,
                cfg.dataset.use_difficult,
            )
            self.model.set_target_stats(means, stds)
        self.model.to(self.device).train()
        self.pool_strategy = resolve_pool_strategy(cfg.sampler.pool_strategy, self.device)
        self.optimizer = build_optimizer(self.model, cfg.solver)
        self.scheduler = build_lr_scheduler(self.optimizer, cfg.solver)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.iteration = 0  # completed iterations
        self.max_iter = cfg.train.max_iter
        self.train_seconds = 0.0  # over all sessions of this run (restored on resume)
        self.metrics_rows: dict[int, dict[str, float]] = {}
        self.eval_sets: dict[str, Any] = {}  # split -> DetectionDataset
        if cfg.train.final_eval or cfg.train.eval_period:
            # read now, not after hours of training: a missing split file, proposal file or
            # annotation of the test (or val) split fails the run before its first iteration.
            # Kept when evaluations come during training; else freed (re-read at the end)
            for split in self.eval_splits(final=cfg.train.final_eval):
                built = build_dataset(cfg, split)  # type: ignore[arg-type]
                if cfg.train.eval_period:
                    self.eval_sets[split] = built
        self._last_eval: dict[str, float] = {}
        self._held_peaks: tuple[float, float | None] = (0.0, None)  # training peaks before evals
        self._final_peaks: tuple[float, float | None] | None = None
        if resume:
            self._resume()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / CONFIG_FILE).write_text(cfg.to_yaml())

    # ------------------------------------------------------------------ setup helpers
    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.cfg.solver.amp
        if amp != "off" and self.device.type != "cuda":
            warnings.warn(f"solver.amp={amp} needs CUDA; training in fp32 on CPU", stacklevel=3)
        return amp_dtype(amp, self.device)

    @property
    def size_divisibility(self) -> int:
        """Training images are padded to a multiple of this (32 while cuDNN autotunes, else 1)."""
        return CUDNN_SIZE_DIVISIBILITY if self.backend_settings.get("cudnn.benchmark") else 1

    def _resume(self) -> None:
        path = last_checkpoint(self.out_dir)
        if path is None:
            return
        blob = read_checkpoint(path, "cpu")
        try:
            self.model.load_state_dict(blob["model"])
            self.optimizer.load_state_dict(blob["optimizer"])
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"{path}: checkpoint does not fit this config's model/solver ({first}); "
                "train into a new --out directory, or restore the config it was trained with"
            ) from None
        self.scheduler.load_state_dict(blob["scheduler"])
        if "scaler" in blob and self.scaler.is_enabled():
            self.scaler.load_state_dict(blob["scaler"])
        self.iteration = int(blob["iteration"])
        self.train_seconds = float(blob.get("train_seconds", 0.0))
        set_rng_state(blob["rng"])
        metrics = self.out_dir / METRICS_FILE
        if metrics.is_file():
            frame = pd.read_parquet(metrics)
            for row in frame.to_dict("records"):
                it = int(row.pop("iteration"))
                if it <= self.iteration:
                    clean = {k: v for k, v in row.items() if not _isnan(v)}
                    self.metrics_rows[it] = clean
        log.info("resumed from %s at iteration %d", path, self.iteration)

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, float]:
        """Run up to train.max_iter iterations; returns the final/* metrics."""
        from ohem_tune.data.loader import TrainLoader

        cfg = self.cfg
        iter_size = cfg.solver.iter_size
        result: dict[str, Any] = {}
        loader = TrainLoader(
            self.train_set,
            cfg,
            cfg.train.seed,
            start_iter=self.iteration * iter_size,
            size_divisibility=self.size_divisibility,
        )
        reset_peak_memory(self.device)
        self._held_peaks, self._final_peaks = (0.0, None), None
        for hook in self.hooks:
            hook.on_train_start(self)
        period = PeriodStats()
        timings: list[dict[str, float]] = []  # host values of each iteration (sec/iter, phases)
        clock = PhaseClock(self.device)
        try:
            while self.iteration < self.max_iter:
                it = self.iteration + 1  # 1-based number of the iteration being run
                log_now = it % cfg.train.log_period == 0 or it == self.max_iter
                eval_now = bool(
                    cfg.train.eval_period and it % cfg.train.eval_period == 0 and it < self.max_iter
                )
                ckpt = cfg.train.checkpoint_period
                ckpt_now = bool(ckpt and it % ckpt == 0) or it == self.max_iter
                micro, host = self._run_iteration(loader, clock, log_now)
                period.add(it, micro, host)
                timings.append(host)
                self.iteration = it
                if log_now or eval_now or ckpt_now:
                    period.read()  # a non-finite loss stops here, before any eval or checkpoint
                step_stats = period.iteration(it) if log_now else host
                for hook in self.hooks:
                    hook.on_step(it, step_stats)
                if log_now:
                    self._log(it, period.means())
                if eval_now:
                    self._evaluate()
                if ckpt_now:
                    self._checkpoint()
            self._final_peaks = self._training_peaks()  # before the final evaluation
            if cfg.train.final_eval:
                self._evaluate(final=True)
            result = self._final_metrics(timings[1:] or timings)
            return result
        finally:
            loader.close()
            for hook in self.hooks:
                hook.on_train_end(result)

    def _run_iteration(
        self, loader, clock: PhaseClock, log_now: bool
    ) -> tuple[list[dict[str, Value]], dict[str, float]]:
        """One SGD update: (each micro-batch's device values, host values: lr and timings)."""
        cfg = self.cfg
        iter_size = cfg.solver.iter_size
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        t_start = time.perf_counter()
        clock.start()
        data_time = 0.0
        micro: list[dict[str, Value]] = []
        for _ in range(iter_size):
            t0 = time.perf_counter()
            # The loader must not draw from the global RNG (DataLoader seeds its workers from
            # it when an iterator starts): keeps resumed runs on the uninterrupted RNG stream.
            with torch.random.fork_rng(devices=[]):
                batch = next(loader)
            batch = batch.to(self.device)
            data_time += time.perf_counter() - t0
            clock.mark("data")
            autocast = (
                torch.autocast("cuda", dtype=self.amp_dtype)
                if self.amp_dtype is not None
                else contextlib.nullcontext()
            )
            with autocast:
                out = forward_minibatch(
                    self.model,
                    batch,
                    self.sampler,
                    cfg.sampler.fg_thresh,
                    self.pool_strategy,
                    cfg.sampler.ranking_dropout,
                    score_all=log_now,
                    clock=clock,
                    iteration=self.iteration + 1,
                )
            clock.mark("forward")
            self.scaler.scale(out.loss / iter_size).backward()
            clock.mark("backward")
            micro.append(
                {
                    K.LOSS: out.loss.detach(),
                    K.LOSS_CLS: out.loss_cls,
                    K.LOSS_BBOX: out.loss_bbox,
                    **out.stats,
                }
            )
        if cfg.solver.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.solver.clip_grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        clock.mark("backward")
        sync()
        total_time = time.perf_counter() - t_start
        self.train_seconds += total_time
        host = {
            K.LR: lr,
            K.SEC_PER_ITER: total_time,
            K.DATA_TIME: data_time,
            K.COMPUTE_TIME: total_time - data_time,
        }
        host.update({PHASE_KEYS[phase]: s for phase, s in clock.seconds().items()})
        return micro, host

    # ------------------------------------------------------------------ logging, eval, ckpt
    def _training_peaks(self) -> tuple[float, float | None]:
        """(allocated, reserved) training peaks so far in GiB; reserved None on the CPU."""
        held_alloc, held_reserved = self._held_peaks
        alloc = max(held_alloc, peak_memory_gb(self.device))
        reserved = peak_reserved_gb(self.device)
        if reserved is not None:
            reserved = max(held_reserved or 0.0, reserved)
        return alloc, reserved

    def _peak_metrics(self, peaks: tuple[float, float | None], final: bool) -> dict[str, float]:
        alloc, reserved = peaks
        keys = (
            (K.FINAL_PEAK_MEM_GB, K.FINAL_PEAK_MEM_ALLOCATED, K.FINAL_PEAK_MEM_RESERVED)
            if final
            else (K.PEAK_MEM_GB, K.PEAK_MEM_ALLOCATED, K.PEAK_MEM_RESERVED)
        )
        metrics = {keys[0]: alloc, keys[1]: alloc}
        if reserved is not None:
            metrics[keys[2]] = reserved
        return metrics

    def _log(self, it: int, metrics: dict[str, float]) -> None:
        metrics.update(self._peak_metrics(self._training_peaks(), final=False))
        self.metrics_rows.setdefault(it, {}).update(metrics)
        self._write_metrics()
        log.info(
            "iter %d/%d loss %.4f (cls %.4f bbox %.4f) lr %.2g %.3fs/it",
            it,
            self.max_iter,
            metrics[K.LOSS],
            metrics[K.LOSS_CLS],
            metrics[K.LOSS_BBOX],
            metrics[K.LR],
            metrics[K.SEC_PER_ITER],
        )
        for hook in self.hooks:
            hook.on_log(it, metrics)

    def _write_metrics(self) -> None:
        rows = [{"iteration": it, **row} for it, row in sorted(self.metrics_rows.items())]
        path = self.out_dir / METRICS_FILE
        tmp = path.with_suffix(".parquet.tmp")
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        os.replace(tmp, path)

    def eval_splits(self, final: bool) -> list[str]:
        """Splits an evaluation measures: train.eval_split; the final one of a val-selecting run
        (a search) adds test, so what was selected on val is also reported on test."""
        split = self.cfg.train.eval_split
        return ["val", "test"] if final and split == "val" else [split]

    def _evaluate(self, final: bool = False) -> dict[str, float]:
        """Evaluate on eval_splits(final). Memory peaks are held before and restarted after,
        so an evaluation's (larger test images, no RoI sampling) never counts as training's."""
        from ohem_tune.data.build import build_dataset
        from ohem_tune.evaluation import evaluate

        metrics: dict[str, float] = {}
        self._held_peaks = self._training_peaks()
        self.model.eval()
        try:
            for split in self.eval_splits(final):
                if split not in self.eval_sets:
                    self.eval_sets[split] = build_dataset(self.cfg, split)  # type: ignore[arg-type]
                with torch.no_grad():
                    result = evaluate(self.model, self.eval_sets[split], self.cfg, self.device)
                metrics.update(split_metrics(result.metrics, split))
        finally:
            self.model.train()
            reset_peak_memory(self.device)
        metrics[K.EVAL_TRAIN_SECONDS] = self.train_seconds  # once per evaluation, not per split
        self._last_eval = metrics
        self.metrics_rows.setdefault(self.iteration, {}).update(metrics)
        self._write_metrics()
        for hook in self.hooks:
            hook.on_eval(self.iteration, metrics)
        return metrics

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything a bit-for-bit resume (and load_model) needs; weights_only-loadable."""
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration,
            "train_seconds": self.train_seconds,
            "rng": rng_state(cuda=self.device.type == "cuda"),
            "class_names": self.class_names,
            "config": self.cfg.model_dump(mode="json"),
        }
        if self.scaler.is_enabled():
            payload["scaler"] = self.scaler.state_dict()
        return payload

    def _checkpoint(self) -> Path:
        path = save_checkpoint(
            self.out_dir, self.iteration, self.checkpoint_payload(), self.cfg.train.keep_checkpoints
        )
        for hook in self.hooks:
            hook.on_checkpoint(self.iteration, path)
        return path

    def _final_metrics(self, timings: list[dict[str, float]]) -> dict[str, float]:
        """final/*: last eval, last loss over all RoIs, mean sec/iter and phases over `timings`
        (this session's iterations but the first), training memory peaks, train seconds."""
        final: dict[str, float] = {}
        for key, value in self._last_eval.items():
            if key.startswith("eval/"):
                final["final/" + key.removeprefix("eval/")] = value
        last_with_loss = [
            r for _, r in sorted(self.metrics_rows.items()) if K.LOSS_PER_ROI_ALL in r
        ]
        if last_with_loss:
            final[K.FINAL_LOSS_PER_ROI_ALL] = last_with_loss[-1][K.LOSS_PER_ROI_ALL]
        if timings:
            final[K.FINAL_SEC_PER_ITER] = float(np.mean([t[K.SEC_PER_ITER] for t in timings]))
            for key in PHASE_KEYS.values():
                name = K.FINAL_PHASE_PREFIX + key.removeprefix(K.PHASE_PREFIX)
                final[name] = float(np.mean([t[key] for t in timings]))
        peaks = self._final_peaks if self._final_peaks is not None else self._training_peaks()
        final.update(self._peak_metrics(peaks, final=True))
        final[K.FINAL_TRAIN_SECONDS] = self.train_seconds
        return final


def split_metrics(metrics: dict[str, float], split: str) -> dict[str, float]:
    """eval/* metrics named for the split they measure: test keeps eval/X, val is eval/val/X."""
    if split == "test":
        return dict(metrics)
    return {"eval/" + K.VAL_GROUP + k.removeprefix("eval/"): v for k, v in metrics.items()}


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
