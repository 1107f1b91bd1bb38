"""The device contract: a run given a GPU trains on it or fails at once with the cause."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.engine.device import cuda_unavailable_reason, trial_device
from ohem_tune.errors import TrainingError
from ohem_tune.spec.schema import ResourcesSpec

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")


@needs_no_cuda
def test_a_gpu_without_cuda_is_an_error_naming_the_cause():
    with pytest.raises(TrainingError) as err:
        trial_device("auto", ["0"])
    message = str(err.value)
    assert "given GPU 0 but CUDA is unavailable" in message and "\n" not in message
    assert cuda_unavailable_reason() in message
    assert "train.device: cpu" in message  # the explicit opt-out is named


@needs_no_cuda
def test_cuda_build_or_visibility_is_what_the_reason_names(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "has no CUDA support" in cuda_unavailable_reason()
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES=''" in cuda_unavailable_reason()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi
    assert "no NVIDIA driver answers" in cuda_unavailable_reason()


def test_explicit_cpu_opts_out_and_no_gpu_trains_on_cpu():
    assert trial_device("cpu", ["0", "1"]) == "cpu"
    assert trial_device("auto", []) == "cpu"
    with pytest.raises(TrainingError, match="has no GPU"):
        trial_device("cuda", [])


def test_more_than_one_gpu_per_trial_is_refused():
    assert ResourcesSpec(gpu=0.5).gpu == 0.5 and ResourcesSpec(gpu=1).gpu == 1
    with pytest.raises(ValueError, match="a trial trains on one GPU"):
        ResourcesSpec(gpu=2)
