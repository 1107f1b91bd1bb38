"""sampler.ranking and its knobs: exact by default, contradictions are one-line errors."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.config import SamplerConfig, build_config
from ohem_tune.data.records import Minibatch
from ohem_tune.engine.step import forward_minibatch
from ohem_tune.errors import ConfigError
from ohem_tune.samplers import build_sampler
from tests.samplers.ranking_helpers import tiny_minibatch


def test_exact_ranking_and_no_agreement_by_default():
    cfg = SamplerConfig()
    knobs = (cfg.ranking_rank, cfg.ranking_sampling_ratio, cfg.ranking_dtype)
    assert (cfg.ranking, *knobs, cfg.agreement_period) == ("exact", None, None, "float32", 0)


@pytest.mark.parametrize(
    ("sampler", "field"),
    [
        ({"ranking": "exact", "ranking_dtype": "bfloat16"}, "sampler.ranking_dtype"),
        ({"ranking": "fast", "ranking_rank": 64}, "sampler.ranking_rank"),
        ({"ranking_rank": 64}, "sampler.ranking_rank"),
        ({"ranking": "lowrank", "pool_strategy": "reuse"}, "sampler.ranking"),
        ({"agreement_period": 10}, "sampler.agreement_period"),
        ({"ranking": "lowrank", "ranking_rank": 0}, "sampler.ranking_rank"),
        ({"ranking": "svd"}, "sampler.ranking"),
        ({"ranking_sampling_ratio": 1}, "sampler.ranking_sampling_ratio"),
    ],
)
def test_contradictory_ranking_settings_are_one_line_errors(sampler: dict, field: str):
    with pytest.raises(ConfigError, match=field) as err:
        build_config({"sampler": {"name": "ohem", **sampler}}, "run.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("run.yaml: ")


def test_an_approximate_pass_needs_a_sampler_that_ranks():
    model, features, targets, _ = tiny_minibatch()
    cfg = SamplerConfig(name="heuristic", ranking="lowrank")
    images = torch.zeros(2, 3, 96, 96)
    batch = Minibatch(
        images=images, image_sizes=[(96, 96)] * 2, scales=[1.0, 1.0],
        rois=[targets.rois[targets.image_index == i, 1:] for i in range(2)],
        gt_boxes=[torch.tensor([[4.0, 4.0, 40.0, 50.0]])] * 2,
        gt_labels=[torch.tensor([1])] * 2, record_indices=[0, 1],
    )  # fmt: skip
    with pytest.raises(ConfigError, match="ranks by loss"):
        forward_minibatch(model, batch, build_sampler(cfg, 2), 0.5)
