"""Versions, GPUs and the per-device op check: the CPU always runs it, a device that cannot run
it fails its row (it never raises), and no GPU fails only when the trials need one."""

from __future__ import annotations

import pytest
import torch
import torchvision

from ohem_tune.doctor.environment import gpu_rows, op_row, ops_rows, version_rows
from ohem_tune.engine.device import cuda_unavailable_reason

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def test_version_rows_name_the_installed_stack():
    rows = {r.check: r for r in version_rows()}
    assert rows["torch"].detail == torch.__version__
    assert rows["torchvision"].detail == torchvision.__version__
    cuda = rows["CUDA build"].detail
    assert (torch.version.cuda or "CPU-only") in cuda
    assert all(r.status == "ok" for r in rows.values())


def test_cpu_ops_give_the_known_results():
    row = op_row("cpu")
    assert (row.check, row.status) == ("ops cpu", "ok"), row.detail
    assert "roi_align and nms" in row.detail


def test_a_device_that_cannot_run_the_ops_fails_its_row():
    row = op_row("cuda:99")  # no machine has it: torch raises, the row reports it
    assert row.status == "fail" and row.detail.split(":")[0].endswith(("Error", "Exception"))


def test_ops_run_on_the_cpu_and_every_gpu():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    rows = ops_rows(gpu_needed=False)
    assert [r.check for r in rows] == ["ops cpu", *(f"ops cuda:{i}" for i in range(count))]


@no_cuda
def test_no_gpu_fails_only_when_the_trials_ask_for_one():
    (needed,) = gpu_rows(True, "the trials of profile 'paper' (1 GPU each)")
    assert needed.status == "fail"
    assert "profile 'paper' (1 GPU each) ask for one" in needed.detail
    assert cuda_unavailable_reason() in needed.detail
    (cpu_run,) = gpu_rows(False)
    assert cpu_run.status == "ok" and cpu_run.detail.startswith("no GPU (CPU run)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_each_gpu_gets_a_row_with_its_capabilities():
    rows = gpu_rows(True)
    assert [r.check for r in rows] == [f"GPU {i}" for i in range(torch.cuda.device_count())]
    name = torch.cuda.get_device_properties(0).name
    assert rows[0].detail.startswith(name) and "compute capability" in rows[0].detail


def test_kernels_of_the_same_major_and_a_lower_minor_run_on_a_gpu():
    from ohem_tune.doctor.environment import has_kernels_for

    built = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # a cu130 wheel's list
    assert has_kernels_for(built, 8, 9)  # L4 / L40S / RTX 4090 run sm_86 cubins
    assert has_kernels_for(built, 9, 0) and has_kernels_for(built, 7, 5)
    assert not has_kernels_for(built, 7, 0)  # V100: dropped from this build
    assert not has_kernels_for(["sm_86"], 8, 0)  # a higher minor does not run on a lower one
    assert has_kernels_for(["sm_90a"], 9, 0) and not has_kernels_for(["sm_90a"], 9, 1)
    assert has_kernels_for(["compute_80"], 9, 0)  # PTX compiles for newer GPUs, not older
    assert not has_kernels_for(["compute_90"], 7, 0)
