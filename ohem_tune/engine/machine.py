"""What a run's numbers depend on beyond code and seed: the CPU model and the torch build.

Same machine, same seed, same code gives bit-identical metrics on CPU; another CPU kernel
(e.g. AVX2 vs AVX-512 dispatch) or another GPU does not, so every run records both.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), with the ISA torch dispatches to."""
    name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def torch_build() -> str:
    """torch version, the CUDA and cuDNN it was built with, and its CPU BLAS backend."""
    cuda = torch.version.cuda or "none"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    blas = "MKL" if torch.backends.mkl.is_available() else "OpenBLAS/other"
    return f"torch {torch.__version__}, CUDA {cuda}, cuDNN {cudnn or 'none'}, CPU BLAS {blas}"
