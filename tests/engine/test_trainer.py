"""Trainer on the tiny synthetic set: loss goes down, resume is exact, failures are named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from ohem_tune.config import Config
from ohem_tune.engine import Hook, load_model
from ohem_tune.engine.checkpoint import last_checkpoint
from ohem_tune.engine.trainer import Trainer
from ohem_tune.errors import ConfigError, TrainingError

pytestmark = pytest.mark.slow

# each sampler in its paper configuration (OHEM and all-RoIs use bg_lo = 0; all-RoIs B = 2048)
SAMPLERS = {
    "heuristic": {},
    "ohem": {"bg_lo": 0.0},
    "all_rois": {"bg_lo": 0.0, "rois_per_batch": 2048},
    "ohem_balanced": {},
}


def _configure(cfg: Config, sampler: str, max_iter: int, **train) -> Config:
    cfg.sampler.name = sampler
    for key, value in SAMPLERS[sampler].items():
        setattr(cfg.sampler, key, value)
    cfg.train.max_iter = max_iter
    cfg.train.final_eval = False
    cfg.train.num_threads = 1  # tiny model: extra threads only add OpenMP sync on a busy CI box
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_training_lowers_the_mean_loss_per_roi(tiny_cfg: Config, tmp_path: Path, sampler: str):
    cfg = _configure(tiny_cfg, sampler, 50, log_period=10, checkpoint_period=0)
    final = Trainer(cfg, tmp_path).train()
    frame = pd.read_parquet(tmp_path / "metrics.parquet")
    assert frame["iteration"].tolist() == [10, 20, 30, 40, 50]
    # the paper's training-loss measure: mean loss per RoI over ALL RoIs (OHEM's own minibatch
    # loss stays high by design: it keeps picking the hardest RoIs)
    curve = frame["train/loss_per_roi_all"].tolist()
    assert curve[-1] < 0.95 * curve[0], curve
    assert final["final/loss_per_roi_all"] == pytest.approx(curve[-1])
    for key in ("train/lr", "train/sec_per_iter", "train/data_time", "train/compute_time",
                "train/peak_mem_gb", "train/fg_fraction", "train/num_selected"):  # fmt: skip
        assert frame[key].notna().all() and (frame[key] > 0).all(), key
    assert final["final/sec_per_iter"] > 0 and final["final/peak_mem_gb"] > 0


@pytest.mark.parametrize("sampler", ["heuristic", "ohem"])
def test_resume_equals_uninterrupted(tiny_cfg: Config, tmp_path: Path, sampler: str):
    straight = _configure(tiny_cfg.model_copy(deep=True), sampler, 20)
    Trainer(straight, tmp_path / "a").train()

    first = _configure(tiny_cfg.model_copy(deep=True), sampler, 10)
    Trainer(first, tmp_path / "b").train()
    assert last_checkpoint(tmp_path / "b").name == "model_0000010.pt"
    second = _configure(tiny_cfg.model_copy(deep=True), sampler, 20)
    resumed = Trainer(second, tmp_path / "b", resume=True)
    assert resumed.iteration == 10
    resumed.train()

    model_a, _, names_a = load_model(tmp_path / "a", "cpu")
    model_b, _, names_b = load_model(tmp_path / "b", "cpu")
    assert names_a == names_b
    for (name, pa), pb in zip(
        model_a.state_dict().items(), model_b.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
    a = pd.read_parquet(tmp_path / "a" / "metrics.parquet")
    b = pd.read_parquet(tmp_path / "b" / "metrics.parquet")
    assert a["iteration"].tolist() == b["iteration"].tolist() == [5, 10, 15, 20]
    pd.testing.assert_series_equal(a["train/loss"], b["train/loss"])


def test_iter_size_accumulates_micro_batches_and_resumes_exactly(tiny_cfg: Config, tmp_path: Path):
    """iter_size = 2: two images' micro-batches per SGD update; a resume continues the loader at
    iteration x iter_size, so it equals the uninterrupted run."""

    def accumulating(max_iter: int) -> Config:
        cfg = _configure(tiny_cfg.model_copy(deep=True), "ohem", max_iter, log_period=1)
        cfg.solver.ims_per_batch, cfg.solver.iter_size = 1, 2
        return cfg

    Trainer(accumulating(6), tmp_path / "a").train()
    Trainer(accumulating(3), tmp_path / "b").train()
    Trainer(accumulating(6), tmp_path / "b", resume=True).train()
    single = _configure(tiny_cfg.model_copy(deep=True), "ohem", 6, log_period=1)
    single.solver.ims_per_batch = 1
    Trainer(single, tmp_path / "c").train()

    a = pd.read_parquet(tmp_path / "a" / "metrics.parquet")
    b = pd.read_parquet(tmp_path / "b" / "metrics.parquet")
    c = pd.read_parquet(tmp_path / "c" / "metrics.parquet")
    pd.testing.assert_series_equal(a["train/loss"], b["train/loss"])
    # an update counts the RoIs of both micro-batches
    assert (a["train/num_selected"] == 2 * tiny_cfg.sampler.rois_per_batch).all()
    assert (c["train/num_selected"] == tiny_cfg.sampler.rois_per_batch).all()
    assert not a["train/loss"].iloc[1:].equals(c["train/loss"].iloc[1:])


class _PoisonAt(Hook):
    """Writes NaN into the classifier after iteration `at` (a corrupted update)."""

    def __init__(self, at: int):
        self.at = at
        self.trainer = None
        self.ended: dict | None = None

    def on_train_start(self, trainer) -> None:
        self.trainer = trainer

    def on_step(self, iteration: int, stats: dict[str, float]) -> None:
        if iteration == self.at:
            with torch.no_grad():
                self.trainer.model.roi_head.cls_score.weight.fill_(float("nan"))

    def on_train_end(self, result) -> None:
        self.ended = result


def test_non_finite_loss_names_the_iteration(tiny_cfg: Config, tmp_path: Path):
    hook = _PoisonAt(3)
    trainer = Trainer(_configure(tiny_cfg, "heuristic", 10), tmp_path, hooks=[hook])
    with pytest.raises(TrainingError, match=r"non-finite loss at iteration 4\b") as err:
        trainer.train()
    assert "\n" not in str(err.value)
    assert hook.ended == {}  # hooks still see the end of a failed run


def test_checkpoints_are_atomic_safe_and_pruned(tiny_cfg: Config, tmp_path: Path):
    cfg = _configure(tiny_cfg, "heuristic", 12, checkpoint_period=4, keep_checkpoints=2)
    seen = []

    class Saw(Hook):
        def on_checkpoint(self, iteration: int, path: Path) -> None:
            seen.append((iteration, path.name))

    Trainer(cfg, tmp_path, hooks=[Saw()]).train()
    assert seen == [(4, "model_0000004.pt"), (8, "model_0000008.pt"), (12, "model_0000012.pt")]
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["last", "model_0000008.pt", "model_0000012.pt"]
    blob = torch.load(tmp_path / "checkpoints" / "model_0000012.pt", weights_only=True)
    assert blob["iteration"] == 12 and {"model", "optimizer", "scheduler", "rng"} <= set(blob)
    model, loaded_cfg, names = load_model(tmp_path / "checkpoints" / "model_0000012.pt")
    assert not model.training and loaded_cfg.sampler.name == "heuristic" and len(names) == 4
    assert (tmp_path / "config.yaml").is_file()


def test_final_evaluation_reaches_hooks_metrics_and_final(tiny_cfg: Config, tmp_path: Path):
    cfg = _configure(tiny_cfg, "heuristic", 10, final_eval=True)
    evals = []

    class Saw(Hook):
        def on_eval(self, iteration: int, metrics: dict[str, float]) -> None:
            evals.append((iteration, metrics))

    final = Trainer(cfg, tmp_path, hooks=[Saw()]).train()
    assert [it for it, _ in evals] == [10]
    assert 0.0 <= final["final/mAP"] <= 1.0
    assert final["final/mAP"] == evals[0][1]["eval/mAP"]
    frame = pd.read_parquet(tmp_path / "metrics.parquet").set_index("iteration")
    assert frame.loc[10, "eval/mAP"] == final["final/mAP"]


def test_each_evaluation_logs_the_training_seconds_so_far(tiny_cfg: Config, tmp_path: Path):
    cfg = _configure(tiny_cfg, "heuristic", 6, final_eval=True, eval_period=3, log_period=1)
    cfg.test.max_images = 3
    evals = []

    class Saw(Hook):
        def on_eval(self, iteration: int, metrics: dict[str, float]) -> None:
            evals.append((iteration, metrics))

    final = Trainer(cfg, tmp_path, hooks=[Saw()]).train()
    assert [it for it, _ in evals] == [3, 6]
    seconds = [m["eval/train_seconds"] for _, m in evals]
    frame = pd.read_parquet(tmp_path / "metrics.parquet").set_index("iteration")
    per_iter = frame["train/sec_per_iter"]  # log_period 1: every iteration's own time
    # the sum of the iterations' times: the evaluation at 3 does not count towards 6
    assert seconds == pytest.approx([per_iter.loc[1:3].sum(), per_iter.loc[1:6].sum()], rel=1e-9)
    assert 0 < seconds[0] < seconds[1] == final["final/train_seconds"]
    assert frame.loc[3, "eval/train_seconds"] == seconds[0]


def test_val_eval_split_evaluates_val_periodically_and_both_at_the_end(
    tiny_cfg: Config, tmp_path: Path
):
    from ohem_tune.data.build import build_dataset
    from ohem_tune.evaluation import evaluate

    cfg = _configure(tiny_cfg, "heuristic", 10, final_eval=True, eval_period=5, eval_split="val")
    cfg.test.max_images = 3
    evals = []

    class Saw(Hook):
        def on_eval(self, iteration: int, metrics: dict[str, float]) -> None:
            evals.append((iteration, metrics))

    trainer = Trainer(cfg, tmp_path, hooks=[Saw()])
    final = trainer.train()
    assert [it for it, _ in evals] == [5, 10]
    periodic = [k for k in evals[0][1] if k != "eval/train_seconds"]  # once per evaluation
    assert "eval/val/mAP" in periodic and not [k for k in periodic if "/val/" not in k]
    assert {"eval/val/mAP", "eval/mAP"} <= set(evals[1][1])  # the end: val and test
    assert final["final/val/mAP"] == evals[1][1]["eval/val/mAP"]
    assert final["final/mAP"] == evals[1][1]["eval/mAP"]
    val, test = build_dataset(cfg, "val"), build_dataset(cfg, "test")
    assert [r.image_id for r in trainer.eval_sets["val"].records] == [
        r.image_id for r in val.records
    ]
    assert [r.image_id for r in trainer.eval_sets["test"].records] == [
        r.image_id for r in test.records
    ]
    again = evaluate(trainer.model.eval(), val, cfg, trainer.device).metrics
    assert again["eval/mAP"] == final["final/val/mAP"]  # measured on val, named val
    frame = pd.read_parquet(tmp_path / "metrics.parquet").set_index("iteration")
    assert pd.isna(frame.loc[5].get("eval/mAP")) and frame.loc[10, "eval/mAP"] == final["final/mAP"]


def test_amp_on_cpu_is_ignored_with_a_warning(tiny_cfg: Config, tmp_path: Path):
    cfg = _configure(tiny_cfg, "heuristic", 2)
    cfg.solver.amp = "bf16"
    with pytest.warns(UserWarning, match="needs CUDA"):
        trainer = Trainer(cfg, tmp_path)
    assert trainer.amp_dtype is None and trainer.device.type == "cpu"


def test_resuming_with_an_incompatible_model_is_a_config_error(tiny_cfg: Config, tmp_path: Path):
    Trainer(_configure(tiny_cfg.model_copy(deep=True), "heuristic", 2), tmp_path).train()
    changed = _configure(tiny_cfg.model_copy(deep=True), "heuristic", 4)
    changed.model.fc_dim = 48
    with pytest.raises(ConfigError, match="checkpoint does not fit"):
        Trainer(changed, tmp_path)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_peak_memory_resets_between_runs_in_one_process() -> None:
    """A reused worker process (Ray actor) must not report an earlier run's peak."""
    from ohem_tune.engine.trainer import peak_memory_gb, reset_peak_memory

    cpu = torch.device("cpu")
    big = torch.ones(64 * 1024 * 1024)  # 256 MiB, touched
    high = peak_memory_gb(cpu)
    del big
    reset_peak_memory(cpu)
    assert peak_memory_gb(cpu) < high - 0.2


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_peak_memory_reset_returns_fragmented_heap_of_an_earlier_run() -> None:
    """Small freed blocks stay mapped by glibc; the next run's peak must not count them."""
    from ohem_tune.engine.trainer import _PROC_STATUS, reset_peak_memory

    def rss_gb() -> float:
        line = next(x for x in _PROC_STATUS.read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024**2

    blocks = [bytes(1000) for _ in range(300_000)]  # ~300 MB of heap blocks above pymalloc's size
    keep = blocks[::64]  # one live block in every few pages: the heap cannot shrink from the top
    del blocks
    before = rss_gb()
    reset_peak_memory(torch.device("cpu"))
    assert rss_gb() < before - 0.15
    del keep


@pytest.mark.parametrize("sampler", ["heuristic", "ohem"])
def test_phase_times_and_training_peaks_are_logged(tiny_cfg: Config, tmp_path: Path, sampler: str):
    cfg = _configure(tiny_cfg, sampler, 8, log_period=4, checkpoint_period=0)
    trainer = Trainer(cfg, tmp_path)
    assert trainer.backend_settings == {} and trainer.size_divisibility == 1  # CPU: untouched
    final = trainer.train()
    frame = pd.read_parquet(tmp_path / "metrics.parquet")
    phases = ["train/phase/data_s", "train/phase/forward_s", "train/phase/ranking_s",
              "train/phase/backward_s"]  # fmt: skip
    for key in phases:
        assert (frame[key] >= 0).all(), key
        assert final[key.replace("train/", "final/")] >= 0
    # the phases are parts of the iteration's wall time
    assert (frame[phases].sum(axis=1) <= frame["train/sec_per_iter"] * (1 + 1e-9)).all()
    ranking = frame["train/phase/ranking_s"]
    assert (ranking > 0).all() if sampler == "ohem" else (ranking == 0).all()
    assert (frame["train/phase/forward_s"] > 0).all() and (
        frame["train/phase/backward_s"] > 0
    ).all()
    assert frame["train/peak_mem_gb"].equals(frame["train/peak_mem_allocated_gb"])
    assert final["final/peak_mem_allocated_gb"] == final["final/peak_mem_gb"] > 0
    assert "train/peak_mem_reserved_gb" not in frame and "final/peak_mem_reserved_gb" not in final


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_evaluation_memory_does_not_count_as_training_peak(
    tiny_cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """An evaluation that needs far more memory than training (here: the real evaluation plus
    512 MiB touched) inflates neither the peaks logged after it nor the final training peak."""
    import ohem_tune.evaluation as evaluation
    from ohem_tune.engine.trainer import peak_memory_gb

    real, during = evaluation.evaluate, []

    def hungry_evaluate(*args, **kwargs):
        spike = torch.ones(128 * 1024 * 1024)  # 512 MiB
        during.append(peak_memory_gb(torch.device("cpu")))
        del spike
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", hungry_evaluate)
    cfg = _configure(tiny_cfg, "heuristic", 8, log_period=2, eval_period=4, final_eval=True)
    cfg.test.max_images = 2
    final = Trainer(cfg, tmp_path).train()
    assert len(during) == 2  # the periodic evaluation at 4 and the final one
    frame = pd.read_parquet(tmp_path / "metrics.parquet").set_index("iteration")
    after_eval = frame.loc[[6, 8], "train/peak_mem_gb"]
    assert (after_eval < min(during) - 0.25).all(), (after_eval.tolist(), during)
    assert final["final/peak_mem_gb"] < min(during) - 0.25


def test_non_finite_loss_stops_before_the_next_checkpoint(tiny_cfg: Config, tmp_path: Path):
    """Losses are read from the device once per log period, but always before a checkpoint:
    corrupted weights are never saved for a resume to restore."""
    cfg = _configure(tiny_cfg, "heuristic", 10, checkpoint_period=4, log_period=10)
    with pytest.raises(TrainingError, match=r"non-finite loss at iteration 6\b"):
        Trainer(cfg, tmp_path, hooks=[_PoisonAt(5)]).train()
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["last", "model_0000004.pt"]


def test_a_missing_test_proposal_file_fails_before_the_first_iteration(
    tiny_cfg: Config, tmp_path: Path
):
    # the test split is read when the trainer is built, not at the final evaluation hours later
    from ohem_tune.errors import DataError

    cfg = _configure(tiny_cfg, "heuristic", 5, final_eval=True)
    cfg.dataset.proposals.test_file = tmp_path / "voc_2007_test.mat"
    with pytest.raises(DataError, match="voc_2007_test.mat"):
        Trainer(cfg, tmp_path / "out")
    assert last_checkpoint(tmp_path / "out") is None  # no iteration ran
    cfg.train.final_eval = False  # a run that evaluates nothing does not need the file
    trainer = Trainer(cfg, tmp_path / "out2")
    trainer.train()
    assert trainer.iteration == 5
