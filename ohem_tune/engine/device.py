"""Which device a run trains on, why CUDA is unusable when a GPU was promised, and how it is set up.

A trial that was given a GPU trains on it or fails at once: a 40k-iteration VGG16 run that
silently falls back to the CPU while holding the GPU costs a day. Also: cuDNN / matmul settings,
the AMP dtype, and a fractional trial's memory cap and release.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

import torch

from ohem_tune.errors import ConfigError, TrainingError


def gpus_hidden() -> bool:
    """CUDA_VISIBLE_DEVICES is set to hide every GPU (empty, -1, NoDevFiles): on purpose."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible is not None and visible.strip() in ("", "-1", "NoDevFiles")


def cuda_unavailable_reason() -> str:
    """One line on why torch cannot use CUDA here (build, visible devices, driver)."""
    if torch.version.cuda is None:
        return (
            f"this torch build ({torch.__version__}) has no CUDA support; install a CUDA build "
            "of the pinned torch"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus_hidden():
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


NOSET_ENV = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


def trial_device(wanted: str, assigned_gpus: Sequence[str | int]) -> str:
    """'cuda' or 'cpu' for a run given `assigned_gpus` by its scheduler, per train.device.

    assigned GPUs + auto/cuda: CUDA or a TrainingError naming the cause; train.device 'cpu'
    is the explicit opt-out (e.g. logical GPUs in tests); no GPU + 'cuda' is an error.
    """
    if wanted == "cpu":
        return "cpu"
    if assigned_gpus:
        noset = os.environ.get(NOSET_ENV, "").lower() in ("1", "true")
        if noset and torch.cuda.is_available() and torch.cuda.device_count() > 1:
            raise TrainingError(
                f"{NOSET_ENV} is set, so Ray leaves CUDA_VISIBLE_DEVICES alone and this trial, "
                f"given GPU {','.join(str(g) for g in assigned_gpus)}, would train on cuda:0 as "
                "every other trial; unset it on the cluster's nodes"
            )
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


CUBLAS_WORKSPACE_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_WORKSPACE_DETERMINISTIC = ":4096:8"  # what torch's reproducibility notes ask for


def configure_cuda_backends(
    device: torch.device, deterministic: bool, matmul_precision: str
) -> dict[str, object]:
    """Apply train.deterministic / train.matmul_precision on a CUDA run; returns what was set.

    CPU runs are left untouched (an empty dict): CPU kernels are deterministic here, and the
    matmul precision also reaches oneDNN's CPU matmuls, which would change CPU results.
    """
    if device.type != "cuda":
        return {}
    settings: dict[str, object] = {
        "cudnn.benchmark": not deterministic,
        "cudnn.deterministic": deterministic,
        "cudnn.allow_tf32": matmul_precision != "highest",
        "deterministic_algorithms": deterministic,
        "float32_matmul_precision": matmul_precision,
    }
    if deterministic:
        # cuBLAS reads it when a handle's workspace is first made, before the first matmul;
        # without it deterministic algorithms cannot make cuBLAS deterministic (CUDA >= 10.2).
        # A value the user set is kept.
        workspace = os.environ.setdefault(CUBLAS_WORKSPACE_ENV, CUBLAS_WORKSPACE_DETERMINISTIC)
        settings[CUBLAS_WORKSPACE_ENV] = workspace
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.allow_tf32 = matmul_precision != "highest"
    # warn_only: RoI pooling's CUDA backward (atomics) has no deterministic variant
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.set_float32_matmul_precision(matmul_precision)
    return settings


def amp_dtype(
    amp: str, device: torch.device, bf16_supported: bool | None = None
) -> torch.dtype | None:
    """solver.amp -> the autocast dtype on `device` (None: fp32; AMP on CPU is left off).

    bf16 on a CUDA device without native bfloat16 is an error, not a slow emulation;
    `bf16_supported` overrides the device query (tests).
    """
    if amp == "off" or device.type != "cuda":
        return None
    if amp == "fp16":
        return torch.float16
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported(including_emulation=False)
    if not bf16_supported:
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "this GPU"
        raise ConfigError(
            f"solver.amp: bf16 needs a GPU with native bfloat16 (compute capability 8.0+), "
            f"{name} has none; set solver.amp: fp16 or off"
        )
    return torch.bfloat16


CUDA_CONTEXT_RESERVE_BYTES = 2**30  # per process, outside the caching allocator's cap


def memory_cap(device_type: str, gpu_share: float, total_bytes: int | None = None) -> float | None:
    """The CUDA memory fraction a trial is capped to: its GPU share when a fraction < 1 on CUDA,
    less 1 GiB of a `total_bytes` GPU for the process's CUDA context (cuBLAS / cuDNN handles),
    which the cap does not cover: two 0.5 trials must fit beside their contexts.

    None (no cap) on the CPU and for a whole GPU.
    """
    if device_type != "cuda" or not 0.0 < gpu_share < 1.0:
        return None
    reserve = CUDA_CONTEXT_RESERVE_BYTES / total_bytes if total_bytes else 0.0
    return max(float(gpu_share) - reserve, float(gpu_share) / 2)


def cap_gpu_memory(device_type: str, gpu_share: float) -> float | None:
    """Cap this process's CUDA caching allocator to its share of cuda:0; returns the cap or None.

    Trials packed on one GPU (resources.gpu: 0.5) then fail with an out-of-memory error of their
    own instead of starving each other.
    """
    total = torch.cuda.get_device_properties(0).total_memory if device_type == "cuda" else None
    fraction = memory_cap(device_type, gpu_share, total)
    if fraction is not None:
        torch.cuda.set_per_process_memory_fraction(fraction, 0)
    return fraction


def release_gpu_memory(device_type: str) -> bool:
    """Hand the caching allocator's free blocks back to the driver at the end of a trial.

    A reused Ray actor would otherwise keep the previous trial's cached blocks. Also lifts the
    memory cap so the next trial in the process sets its own. False on the CPU (nothing to do).
    """
    if device_type != "cuda" or not torch.cuda.is_available():
        return False
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1.0, 0)
    return True
