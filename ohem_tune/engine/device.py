"""Which device a run trains on, and why CUDA is unusable when a GPU was promised.

A trial that was given a GPU trains on it or fails at once: a 40k-iteration VGG16 run that
silently falls back to the CPU while holding the GPU costs a day.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

import torch

from ohem_tune.errors import TrainingError


def cuda_unavailable_reason() -> str:
    """One line on why torch cannot use CUDA here (build, visible devices, driver)."""
    if torch.version.cuda is None:
        return (
            f"this torch build ({torch.__version__}) has no CUDA support; install a CUDA build "
            "of the pinned torch"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    driver = nvidia_driver_version()
    if driver is None:
        return (
            f"torch is built for CUDA {torch.version.cuda} but no NVIDIA driver answers "
            "(nvidia-smi not found or failing); check the node's driver"
        )
    return (
        f"torch is built for CUDA {torch.version.cuda} but cannot use the driver {driver} "
        f"(CUDA_VISIBLE_DEVICES={visible!r}); a driver older than the wheel's CUDA is the usual "
        "cause: upgrade the driver or install a torch build for an older CUDA"
    )


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver version from nvidia-smi, or None when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


def trial_device(wanted: str, assigned_gpus: Sequence[str | int]) -> str:
    """'cuda' or 'cpu' for a run given `assigned_gpus` by its scheduler, per train.device.

    assigned GPUs + auto/cuda: CUDA or a TrainingError naming the cause; train.device 'cpu'
    is the explicit opt-out (e.g. logical GPUs in tests); no GPU + 'cuda' is an error.
    """
    if wanted == "cpu":
        return "cpu"
    if assigned_gpus:
        if not torch.cuda.is_available():
            ids = ",".join(str(g) for g in assigned_gpus)
            raise TrainingError(
                f"this trial was given GPU {ids} but CUDA is unavailable: "
                f"{cuda_unavailable_reason()}; or set train.device: cpu to train on the CPU "
                "on purpose"
            )
        return "cuda"
    if wanted == "cuda":
        raise TrainingError(
            "train.device is 'cuda' but this trial has no GPU; set resources.gpu (e.g. 1 or 0.5) "
            "or train.device: auto"
        )
    return "cpu"
