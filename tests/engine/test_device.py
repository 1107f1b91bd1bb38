"""The device contract: a run given a GPU trains on it or fails at once with the cause."""

from __future__ import annotations

import os

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


def test_memory_cap_only_for_a_fraction_of_a_gpu_on_cuda():
    from ohem_tune.engine.device import memory_cap

    assert memory_cap("cuda", 0.5) == 0.5
    assert memory_cap("cuda", 0.25) == 0.25
    # each process's CUDA context (~0.5-1 GiB) lies outside the cap: 1 GiB is kept for it
    assert memory_cap("cuda", 0.5, 24 * 2**30) == 0.5 - 1 / 24
    assert memory_cap("cuda", 0.5, 80 * 2**30) == 0.5 - 1 / 80
    assert memory_cap("cuda", 0.25, 2 * 2**30) == 0.125  # never below half the share
    assert memory_cap("cuda", 1.0) is None  # a whole GPU: nothing to share
    assert memory_cap("cpu", 0.5) is None  # a logical GPU with train.device: cpu
    assert memory_cap("cpu", 0.0) is None


def test_cpu_trials_cap_and_release_nothing():
    from ohem_tune.engine.device import cap_gpu_memory, release_gpu_memory

    assert cap_gpu_memory("cpu", 0.5) is None
    assert release_gpu_memory("cpu") is False


def test_amp_dtype_per_device_and_bf16_support():
    from ohem_tune.engine.device import amp_dtype
    from ohem_tune.errors import ConfigError

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert amp_dtype("off", cuda) is None
    assert amp_dtype("fp16", cuda) is torch.float16
    assert amp_dtype("bf16", cuda, bf16_supported=True) is torch.bfloat16
    assert amp_dtype("bf16", cpu) is None  # AMP is a CUDA option; the trainer warns on CPU
    with pytest.raises(
        ConfigError, match=r"^solver\.amp: bf16 needs a GPU .*set solver\.amp: fp16"
    ):
        amp_dtype("bf16", cuda, bf16_supported=False)
    try:
        amp_dtype("bf16", cuda, bf16_supported=False)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@pytest.fixture
def restore_backends():
    """Put torch's global backend flags back after a test that sets them."""
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.allow_tf32,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.get_float32_matmul_precision(),
    )
    yield
    bench, det, tf32, algos, warn_only, precision = saved
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = bench, det
    torch.backends.cudnn.allow_tf32 = tf32
    torch.use_deterministic_algorithms(algos, warn_only=warn_only)
    torch.set_float32_matmul_precision(precision)


def test_cpu_runs_leave_backend_flags_alone(restore_backends):
    from ohem_tune.engine.device import configure_cuda_backends

    before = (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision())
    assert configure_cuda_backends(torch.device("cpu"), False, "medium") == {}
    assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == before


@pytest.mark.parametrize(
    ("deterministic", "precision"), [(False, "high"), (True, "highest"), (False, "medium")]
)
def test_cuda_backend_flags_follow_the_config(restore_backends, deterministic, precision):
    """The CUDA branch sets torch's global flags (settable without a GPU)."""
    from ohem_tune.engine.device import configure_cuda_backends

    settings = configure_cuda_backends(torch.device("cuda"), deterministic, precision)
    assert torch.backends.cudnn.benchmark is (not deterministic)
    assert torch.backends.cudnn.deterministic is deterministic
    assert torch.are_deterministic_algorithms_enabled() is deterministic
    assert torch.get_float32_matmul_precision() == precision
    assert torch.backends.cudnn.allow_tf32 is (precision != "highest")
    assert settings["cudnn.benchmark"] is (not deterministic)


@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_cuda_runs_set_the_cublas_workspace(
    restore_backends, monkeypatch, deterministic
):
    """cuBLAS is only deterministic with CUBLAS_WORKSPACE_CONFIG set before its first matmul."""
    from ohem_tune.engine.device import CUBLAS_WORKSPACE_ENV, configure_cuda_backends

    monkeypatch.delenv(CUBLAS_WORKSPACE_ENV, raising=False)
    settings = configure_cuda_backends(torch.device("cuda"), deterministic, "highest")
    if deterministic:
        assert os.environ[CUBLAS_WORKSPACE_ENV] == ":4096:8"
        assert settings[CUBLAS_WORKSPACE_ENV] == ":4096:8"
    else:
        assert CUBLAS_WORKSPACE_ENV not in os.environ and CUBLAS_WORKSPACE_ENV not in settings


def test_a_cublas_workspace_the_user_set_is_kept(restore_backends, monkeypatch):
    from ohem_tune.engine.device import CUBLAS_WORKSPACE_ENV, configure_cuda_backends

    monkeypatch.setenv(CUBLAS_WORKSPACE_ENV, ":16:8")
    settings = configure_cuda_backends(torch.device("cuda"), True, "highest")
    assert os.environ[CUBLAS_WORKSPACE_ENV] == ":16:8" and settings[CUBLAS_WORKSPACE_ENV] == ":16:8"


@needs_no_cuda
def test_auto_with_a_driver_torch_cannot_use_is_an_error_not_a_cpu_run(monkeypatch, tmp_path):
    from ohem_tune.engine.trainer import resolve_device

    # a node whose driver answers (a stand-in nvidia-smi on PATH) while torch has no CUDA
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 535.104.05\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(TrainingError) as err:
        resolve_device("auto")
    message = str(err.value)
    assert "NVIDIA driver (535.104.05) answers" in message and "train.device: cpu" in message
    assert "\n" not in message
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # GPUs hidden on purpose: the CPU
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setenv("PATH", "/nonexistent")  # no driver at all: the CPU
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(TrainingError, match="'cuda' requested but CUDA is unavailable"):
        resolve_device("cuda")


def test_a_checkpoint_restores_only_the_training_gpus_generator(monkeypatch):
    # saved on a 4-GPU node by older code (one state per visible GPU), resumed where one GPU is
    # visible: device 0's state is restored, never set_rng_state_all's per-index loop
    from ohem_tune.engine import checkpoint

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s: restored.append(s))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: pytest.fail("per-GPU restore"))
    state = checkpoint.rng_state()
    assert "cuda" not in state  # a CPU run saves no CUDA generator (nor initialises CUDA)
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    checkpoint.set_rng_state({**state, "cuda": states})
    checkpoint.set_rng_state({**state, "cuda": states[2]})
    assert [int(s[0]) for s in restored] == [0, 2]


def test_ray_not_setting_cuda_visible_devices_is_refused(monkeypatch):
    # with it, every trial would train on cuda:0 whatever GPU Ray gave it
    monkeypatch.setenv("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(TrainingError, match="unset it") as err:
        trial_device("auto", ["3"])
    assert "given GPU 3" in str(err.value)
    assert trial_device("cpu", ["3"]) == "cpu"  # the explicit CPU opt-out needs no GPU
    # one visible GPU (a one-GPU node, a container that set CUDA_VISIBLE_DEVICES): cuda:0 is it
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert trial_device("auto", ["0"]) == "cuda"
