"""The agreement metric: Jaccard and loss ratio against the exact pass, logged at its period."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from ohem_tune.config import Config
from ohem_tune.engine.trainer import Trainer
from ohem_tune.samplers import build_sampler
from ohem_tune.samplers.ranking import agreement, build_ranking_pass, jaccard
from ohem_tune.tracking_keys import RANKING_JACCARD, RANKING_LOSS_RATIO
from tests.samplers.ranking_helpers import ohem_config, tiny_minibatch


def test_jaccard_of_index_sets():
    def j(a: list[int], b: list[int]) -> float:
        return float(
            jaccard(torch.tensor(a, dtype=torch.long), torch.tensor(b, dtype=torch.long), 6)
        )

    assert j([0, 1, 2], [1, 2, 3]) == 0.5
    assert j([4, 5], [5, 4]) == 1.0
    assert j([0], [1]) == 0.0
    assert j([], []) == 1.0


@pytest.mark.parametrize(("method", "rank", "exact"), [("fast", None, True), ("lowrank", 2, False)])
def test_agreement_replays_the_masks_and_leaves_the_rng_alone(method, rank, exact: bool):
    model, features, targets, norm = tiny_minibatch()
    cfg = ohem_config(ranking=method, ranking_rank=rank)
    sampler = build_sampler(cfg, 2)
    torch.manual_seed(11)
    approx = build_ranking_pass(cfg, model, features, targets, norm)
    chosen = sampler.select(targets, approx).indices
    after = torch.get_rng_state()
    stats = agreement(sampler, approx, chosen)
    assert torch.equal(torch.get_rng_state(), after)  # training's RNG stream is untouched
    jac, ratio = float(stats[RANKING_JACCARD]), float(stats[RANKING_LOSS_RATIO])
    if exact:  # replayed masks, the same maths: the same losses and RoIs
        assert (jac, ratio) == (1.0, 1.0)
    else:  # rank 2 of a 784-dim pooled feature: a different, easier selection
        assert jac < 1.0 and ratio < 1.0


def _agreement_run(cfg: Config, out: Path, period: int) -> pd.DataFrame:
    cfg.sampler.name = "ohem"
    cfg.sampler.bg_lo = 0.0
    cfg.sampler.ranking = "lowrank"
    cfg.sampler.ranking_rank = 8
    cfg.sampler.agreement_period = period
    cfg.train.max_iter = 20
    cfg.train.log_period = 5
    cfg.train.final_eval = False
    cfg.train.num_threads = 1
    Trainer(cfg, out).train()
    return pd.read_parquet(out / "metrics.parquet").set_index("iteration")


def test_agreement_is_logged_at_the_configured_period(tiny_cfg: Config, tmp_path: Path):
    frame = _agreement_run(tiny_cfg, tmp_path, period=10)
    logged = frame[RANKING_JACCARD].dropna()
    assert list(logged.index) == [10, 20]  # log rows 5 and 15 saw no check
    assert ((logged >= 0) & (logged <= 1)).all()
    ratios = frame[RANKING_LOSS_RATIO].dropna()
    assert list(ratios.index) == [10, 20] and all(math.isfinite(r) and r > 0 for r in ratios)


def test_the_check_does_not_change_training(tiny_cfg: Config, tmp_path: Path):
    checked = _agreement_run(tiny_cfg.model_copy(deep=True), tmp_path / "checked", period=5)
    unchecked = _agreement_run(tiny_cfg, tmp_path / "unchecked", period=0)
    assert RANKING_JACCARD not in unchecked
    for key in ("train/loss", "train/loss_cls", "train/loss_bbox"):
        assert checked[key].tolist() == unchecked[key].tolist()
