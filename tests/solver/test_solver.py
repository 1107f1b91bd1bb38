"""Solver: Fast R-CNN parameter groups and the warm-up + step schedule."""

from __future__ import annotations

import io

import pytest
import torch

from ohem_tune.config import SolverConfig, build_config
from ohem_tune.modeling import build_model
from ohem_tune.solver import build_lr_scheduler, build_optimizer, lr_multiplier


def _model():
    return build_model(build_config({"model": {"backbone": "tiny", "fc_dim": 16}}), 2)


def test_bias_lr_doubled_and_not_decayed():
    model = _model()
    opt = build_optimizer(model, SolverConfig(lr=0.01, weight_decay=5e-4))
    by_id = {id(p): g for g in opt.param_groups for p in g["params"]}
    fc6 = model.roi_head.fc6
    assert by_id[id(fc6.weight)]["lr"] == 0.01 and by_id[id(fc6.weight)]["weight_decay"] == 5e-4
    assert by_id[id(fc6.bias)]["lr"] == 0.02 and by_id[id(fc6.bias)]["weight_decay"] == 0.0
    bn = model.trunk[1]
    assert by_id[id(bn.weight)]["weight_decay"] == 0.0
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)
    assert opt.defaults["momentum"] == 0.9


def test_frozen_parameters_are_left_out():
    model = build_model(build_config({"model": {"backbone": "tiny", "freeze_at": 1}}), 2)
    opt = build_optimizer(model, SolverConfig())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.trunk[0].weight) not in in_opt
    assert id(model.trunk[3].weight) in in_opt


def test_step_schedule_with_warmup():
    assert lr_multiplier(0, [10, 20], 0.1, 4, 0.25) == pytest.approx(0.25)
    assert lr_multiplier(2, [10, 20], 0.1, 4, 0.25) == pytest.approx(0.625)
    assert lr_multiplier(4, [10, 20], 0.1, 4, 0.25) == pytest.approx(1.0)
    assert lr_multiplier(10, [10, 20], 0.1, 4, 0.25) == pytest.approx(0.1)
    assert lr_multiplier(25, [10, 20], 0.1, 4, 0.25) == pytest.approx(0.01)


def test_scheduler_drives_every_group_and_round_trips_its_state():
    model = _model()
    cfg = SolverConfig(lr=0.1, steps=[3], gamma=0.5)
    opt = build_optimizer(model, cfg)
    sched = build_lr_scheduler(opt, cfg)
    lrs = []
    for _ in range(5):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [row[0] for row in lrs] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05])
    assert [row[1] for row in lrs] == pytest.approx([0.2, 0.2, 0.2, 0.1, 0.1])  # biases x2
    state = sched.state_dict()
    fresh = build_lr_scheduler(build_optimizer(_model(), cfg), cfg)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 5
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["steps"] == [3]  # plain values only
