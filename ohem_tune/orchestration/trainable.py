"""The Ray Tune function trainable: one trial = one Trainer run, logged to its own MLflow run.

Ray Tune and MLflow observe the Trainer through a hook only. The trial reports to Tune every K
iterations (or at evaluations when a scheduler or searcher decides on a metric), hands Tune a
checkpoint whenever the Trainer wrote one, and restores from `tune.get_checkpoint()` on retries.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ohem_tune import __version__
from ohem_tune import tracking_keys as tk
from ohem_tune.config import Config, build_config, deep_merge
from ohem_tune.engine.hooks import Hook
from ohem_tune.errors import ConfigError, OhemTuneError
from ohem_tune.orchestration.keys import (
    FIRST_ITER,
    ITERATION,
    RUN_ID,
    STATUS,
    TAG_RAY_NODE,
    TRIAL_CPU_SECONDS,
    TRIAL_ID,
    TRIAL_SECONDS,
    TRIAL_START,
)
from ohem_tune.orchestration.tracking import (
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_INTERRUPTED,
    STATUS_PRUNED,
    TrialRun,
    finite_metrics,
    host_name,
)
from ohem_tune.spec.expand import dotted_tree, trial_id_for


@dataclass
class TrialContext:
    """What every trial of one invocation shares (sent once through tune.with_parameters)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None
    trials_dir: str
    payloads: list[dict[str, Any]]  # fixed trials, or one template per variant (Optuna)
    search_keys: list[str] = field(default_factory=list)
    report_every: int | None = None
    eval_reports_only: bool = False
    metric: str | None = None
    hooks: list[str] = field(default_factory=list)
    common_tags: dict[str, str] = field(default_factory=dict)
    cpu: float = 1.0
    scheduler: bool = False  # whether a scheduler may stop trials (else a stop is an interrupt)
    # Hand checkpoints to Tune (a cloud storage: trials/ is on each node's own disk). On a
    # filesystem storage trials/ is already there, seen by every node, and retries resume from it.
    tune_checkpoints: bool = True


def trial_payload(trial: Any, run_name: str) -> dict[str, Any]:
    """A TrialSpec as plain data for the trial process (the config as a JSON-able tree)."""
    return {
        "config": trial.config.model_dump(mode="json"),
        "trial_id": trial.trial_id,
        "config_hash": trial.config_hash,
        "tags": dict(trial.tags),
        "run_name": run_name,
        "variant": trial.variant,
        "seed": trial.seed,
    }


def resolve_trial(config: dict[str, Any], ctx: TrialContext) -> tuple[Config, dict[str, Any]]:
    """The trial's Config and payload: a fixed trial by index, or a template plus Optuna values."""
    if "trial_index" in config:
        payload = dict(ctx.payloads[int(config["trial_index"])])
        return build_config(payload["config"], f"trial {payload['run_name']}"), payload
    payload = dict(ctx.payloads[int(config.get("variant_index", 0))])
    point = {k: config[k] for k in ctx.search_keys if k in config}
    tree = deep_merge(payload["config"], dotted_tree(point))
    cfg = build_config(tree, f"search point {point}")
    config_hash, trial_id = trial_id_for(cfg)
    tags = {
        **payload["tags"],
        tk.TAG_TRIAL_ID: trial_id,
        tk.TAG_CONFIG_HASH: config_hash,
        tk.TAG_SEARCH_POINT: json.dumps(point, sort_keys=True),
    }
    short = ",".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in point.items())
    payload.update(
        trial_id=trial_id,
        config_hash=config_hash,
        tags=tags,
        run_name=f"{payload['variant']}[{short}]-s{payload['seed']}",
        config=cfg.model_dump(mode="json"),
    )
    return cfg, payload


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class TuneMlflowHook(Hook):
    """Logs train/eval metrics to the trial's MLflow run and reports them to Ray Tune."""

    def __init__(
        self,
        run: TrialRun,
        ctx: TrialContext,
        max_iter: int,
        trial_id: str,
        started: float | None = None,
        cpu_started: float | None = None,
    ) -> None:
        self.started = time.time() if started is None else started  # the trial's, for reports
        self.cpu_started = _cpu_seconds() if cpu_started is None else cpu_started
        self.run = run
        self.ctx = ctx
        self.max_iter = max_iter
        self.trial_id = trial_id
        self.latest: dict[str, float] = {}
        self.pending_checkpoint: Path | None = None
        self.first_iter_unix: float | None = None
        self.last_reported = -1
        self.stopped = False

    def on_step(self, iteration: int, stats: dict[str, float]) -> None:
        if self.first_iter_unix is None:
            self.first_iter_unix = time.time()
        if _stop_requested():
            raise SystemExit(0)  # stopped by a scheduler: do not train on until the next report

    def on_log(self, iteration: int, metrics: dict[str, float]) -> None:
        if not self.run.already_logged(tk.LOSS, iteration):
            self.run.log_metrics(metrics, step=iteration)
        self.latest.update(finite_metrics(metrics))
        every = self.ctx.report_every
        due = every is None or iteration % every == 0 or iteration == self.max_iter
        if due and not self.ctx.eval_reports_only:
            self.report(iteration)

    def on_eval(self, iteration: int, metrics: dict[str, float]) -> None:
        self.run.log_metrics(metrics, step=iteration)
        self.latest.update(finite_metrics(metrics))
        self.report(iteration)

    def on_checkpoint(self, iteration: int, path: Path) -> None:
        self.pending_checkpoint = Path(path)

    def report(self, iteration: int, extra: dict[str, Any] | None = None) -> None:
        """tune.report the latest metrics, with a Tune checkpoint if the Trainer wrote one (and
        the context hands checkpoints to Tune)."""
        from ray import tune

        result: dict[str, Any] = {
            **self.latest,
            **(extra or {}),
            ITERATION: iteration,
            TRIAL_ID: self.trial_id,
            RUN_ID: self.run.run_id,
        }
        if self.first_iter_unix is not None:
            result[FIRST_ITER] = self.first_iter_unix
        # in every result, so a trial a scheduler stops still counts its compute time
        result.setdefault(TRIAL_START, self.started)
        result.setdefault(TRIAL_SECONDS, time.time() - self.started)
        result.setdefault(TRIAL_CPU_SECONDS, _cpu_seconds() - self.cpu_started)
        if self.ctx.metric and self.ctx.metric not in result and self.ctx.eval_reports_only:
            return  # searchers and schedulers need their metric in every result
        if self.stopped:
            return
        self.last_reported = iteration
        ckpt_path, self.pending_checkpoint = self.pending_checkpoint, None
        if not self.ctx.tune_checkpoints:
            ckpt_path = None
        try:
            if ckpt_path is None or not ckpt_path.is_file():
                tune.report(result)
                return
            # In the trial's folder, beside the checkpoint: the link holds, so Tune's copy into
            # its storage is the only one (from /tmp, another filesystem, it was a second copy).
            trial_dir = ckpt_path.parent.parent
            with tempfile.TemporaryDirectory(prefix="ohem_ckpt_", dir=trial_dir) as tmp:
                _link_or_copy(ckpt_path, Path(tmp) / ckpt_path.name)
                (Path(tmp) / "last").write_text(ckpt_path.name + "\n")
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        except SystemExit:
            if iteration < self.max_iter:
                raise  # a scheduler stopped the trial early: pruned
            self.stopped = True  # the last iteration's stop is completion: finish normally


def _stop_requested() -> bool:
    """Whether Tune asked this trial to stop (it otherwise notices only at the next report).

    Reads the session's stop event, a Ray-internal attribute: absent, it reads as False.
    """
    try:
        from ray.train._internal.session import get_session

        session = get_session()
    except Exception:
        return False
    event = getattr(session, "stop_event", None)
    return bool(event is not None and event.is_set())


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def restore_tune_checkpoint(out_dir: Path) -> int | None:
    """Copy the checkpoint Tune hands back (after a failure) into out_dir when it is newer."""
    from ray import tune

    from ohem_tune.engine.checkpoint import CHECKPOINT_DIR, LAST_FILE

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        last = Path(folder) / LAST_FILE
        if not last.is_file():
            return None
        name = last.read_text().strip()
        tune_iter = _iteration_of(name)
        ckpt_dir = out_dir / CHECKPOINT_DIR
        local_last = ckpt_dir / LAST_FILE
        local_iter = _iteration_of(local_last.read_text().strip()) if local_last.is_file() else -1
        if local_iter >= tune_iter and (ckpt_dir / local_last.read_text().strip()).is_file():
            return local_iter
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(folder) / name, ckpt_dir / name)
        tmp = ckpt_dir / (LAST_FILE + ".tmp")
        tmp.write_text(name + "\n")
        os.replace(tmp, local_last)
        return tune_iter


def _iteration_of(name: str) -> int:
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else -1


def _load_hooks(paths: list[str]) -> list[Hook]:
    hooks = []
    for item in paths:
        module_name, _, attr = item.partition(":")
        try:
            hook_cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"hooks: cannot import '{item}' in the trial ({exc})") from None
        hooks.append(hook_cls())
    return hooks


def pick_device(cfg: Config) -> tuple[str, str]:
    """(train.device, device tag): the GPU Ray assigned to this trial, the CPU, or an error."""
    import ray
    import torch

    from ohem_tune.engine.device import trial_device

    device = trial_device(cfg.train.device, ray.get_gpu_ids())
    if device == "cuda":
        return "cuda", torch.cuda.get_device_name(0)
    return "cpu", "cpu"


def trial_main(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune entry point of one trial (a function trainable)."""
    import torch

    started, cpu_started = time.time(), _cpu_seconds()
    cfg, payload = resolve_trial(config, ctx)
    trial_id = payload["trial_id"]
    done = TrialRun.finished_metrics(ctx.tracking_uri, ctx.experiment_id, trial_id)
    if done is not None:  # an identical configuration already finished: report, do not re-run
        _report_final(done, cfg.train.max_iter, trial_id, ctx, status="SKIPPED")
        return

    device_error: OhemTuneError | None = None
    try:
        device, device_tag = pick_device(cfg)
    except OhemTuneError as exc:  # raised inside the run below, so MLflow records why
        device, device_tag, device_error = "cpu", "unusable GPU", exc
    from ohem_tune.engine.device import cap_gpu_memory, memory_cap, release_gpu_memory

    gpu_share = _gpu_share()
    total = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else None
    gpu_cap = memory_cap(device, gpu_share, total)  # a fraction of the GPU on CUDA, else None
    threads = max(1, int(ctx.cpu))
    torch.set_num_threads(threads)
    cfg.train.device = device
    if cfg.train.num_threads is None:
        cfg.train.num_threads = threads

    from ohem_tune.engine.machine import cpu_model, torch_build
    from ohem_tune.evaluation.protocol import test_protocol

    tags = {
        **ctx.common_tags,
        **payload["tags"],
        tk.TAG_TEST_PROTOCOL: test_protocol(cfg),
        tk.TAG_DEVICE: device_tag,
        tk.TAG_GPU_MEMORY_CAP: "none" if gpu_cap is None else f"{gpu_cap:g}",
        tk.TAG_CPU: cpu_model(),
        tk.TAG_TORCH_BUILD: torch_build(),
        tk.TAG_HOST: host_name(),
        tk.TAG_VERSION: __version__,
        TAG_RAY_NODE: _node_id(),
    }
    run = TrialRun.open(
        ctx.tracking_uri,
        ctx.experiment_id,
        trial_id,
        payload["run_name"],
        tags,
        ctx.parent_run_id,
    )
    out_dir = Path(ctx.trials_dir) / trial_id
    out_dir.mkdir(parents=True, exist_ok=True)
    restore_tune_checkpoint(out_dir)
    hook = TuneMlflowHook(run, ctx, cfg.train.max_iter, trial_id, started, cpu_started)
    status, error = STATUS_FAILED, None
    trainer = None
    try:
        from ohem_tune.engine.trainer import Trainer

        if device_error is not None:
            raise device_error
        cap_gpu_memory(device, gpu_share)
        run.log_params(cfg.flat())
        (out_dir / "resolved_config.yaml").write_text(cfg.to_yaml())
        trainer = Trainer(cfg, out_dir, hooks=[hook, *_load_hooks(ctx.hooks)], resume=True)
        final = trainer.train()
        run.log_metrics(final, step=cfg.train.max_iter)
        run.log_artifacts([out_dir / "resolved_config.yaml", out_dir / "metrics.parquet"])
        status = STATUS_FINISHED
        extra = {**final, STATUS: STATUS_FINISHED}  # the hook adds start, seconds, CPU seconds
        if ctx.metric and ctx.metric not in hook.latest and ctx.metric in _final_alias(final):
            extra[ctx.metric] = _final_alias(final)[ctx.metric]
        try:
            hook.report(cfg.train.max_iter, extra)
        except SystemExit:
            pass  # a scheduler stop on the very last report: the trial is complete anyway
    except SystemExit:  # ASHA stopped the trial, or the driver is shutting down (Ctrl-C)
        status = STATUS_PRUNED if ctx.scheduler else STATUS_INTERRUPTED
        raise
    except OhemTuneError as exc:  # a non-finite loss, bad data: deterministic, no retry helps
        status, error = STATUS_FAILED, f"{type(exc).__name__}: {exc}"[:4000]
        _safe_report(hook, cfg.train.max_iter, {STATUS: STATUS_FAILED})
    except BaseException as exc:
        status = STATUS_FAILED
        error = f"{type(exc).__name__}: {exc}"[:4000]
        (out_dir / "error.txt").write_text(traceback.format_exc())
        raise  # Tune retries from the last checkpoint up to FailureConfig.max_failures
    finally:
        try:
            run.end(status, error)
        finally:
            trainer = None  # its model, gradients and momentum: freed before the cache is emptied
            release_gpu_memory(device)  # a reused actor must not keep this trial's blocks


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _gpu_share() -> float:
    """The GPUs Ray assigned to this trial (0.5 when two trials share one)."""
    import ray

    return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _final_alias(final: dict[str, float]) -> dict[str, float]:
    """final/X -> eval/X, so a searcher's eval metric exists even without periodic evaluation."""
    return {
        "eval/" + k.removeprefix("final/"): v for k, v in final.items() if k.startswith("final/")
    }


def _safe_report(hook: TuneMlflowHook, iteration: int, extra: dict[str, Any]) -> None:
    try:
        hook.report(iteration, extra)
    except SystemExit:
        pass


def _report_final(
    metrics: dict[str, float], max_iter: int, trial_id: str, ctx: TrialContext, status: str
) -> None:
    from ray import tune

    result: dict[str, Any] = {**metrics, ITERATION: max_iter, TRIAL_ID: trial_id, STATUS: status}
    result.update({k: v for k, v in _final_alias(metrics).items() if k not in result})
    tune.report(result)
