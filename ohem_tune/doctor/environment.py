"""This machine's torch stack and devices: versions, each GPU, and a small op check per device.

The op check runs what every trial runs (a float32 matmul, torchvision's roi_align and nms) on
inputs whose results are known exactly, so a wheel without kernels for the GPU, or a broken
driver, shows here and not an hour into a trial.
"""

from __future__ import annotations

import torch

from ohem_tune.doctor.rows import Row
from ohem_tune.engine.device import cuda_unavailable_reason, nvidia_driver_version

MATMUL_SIZE = 256
MATMUL_RTOL = 1e-2  # loose enough for TF32 matmuls on Ampere+, tight enough to catch garbage


def version_rows() -> list[Row]:
    """torch, torchvision, the CUDA version torch is built for (and cuDNN), the NVIDIA driver."""
    import torchvision

    rows = [
        Row("torch", "ok", torch.__version__),
        Row("torchvision", "ok", torchvision.__version__),
    ]
    if torch.version.cuda is None:
        rows.append(Row("CUDA build", "ok", "none: a CPU-only torch build"))
    else:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        rows.append(Row("CUDA build", "ok", f"CUDA {torch.version.cuda}, cuDNN {cudnn or 'none'}"))
    driver = nvidia_driver_version()
    rows.append(
        Row("NVIDIA driver", "ok", driver or "none (nvidia-smi not found or not answering)")
    )
    return rows


def gpu_rows(gpu_needed: bool, where: str = "") -> list[Row]:
    """One row per visible GPU (name, memory, capability, bf16 / TF32); without one, a single
    row that fails when `gpu_needed` (the spec's profile asks for GPUs) and says why."""
    if not torch.cuda.is_available():
        reason = cuda_unavailable_reason()
        if gpu_needed:
            asker = where or "the trials"
            return [Row("GPU", "fail", f"no usable GPU, but {asker} ask for one: {reason}")]
        return [Row("GPU", "ok", f"no GPU (CPU run): {reason}")]
    return [gpu_row(index) for index in range(torch.cuda.device_count())]


def gpu_row(index: int) -> Row:
    """cuda:<index>: name, memory, compute capability and the number formats it runs natively."""
    props = torch.cuda.get_device_properties(index)
    major, minor = props.major, props.minor
    ampere = major >= 8  # bf16 and TF32 tensor cores: sm_80 and newer
    detail = (
        f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability {major}.{minor}, "
        f"bf16 {'yes' if ampere else 'no'}, TF32 {'yes' if ampere else 'no'}"
    )
    arch = f"sm_{major}{minor}"
    built = torch.cuda.get_arch_list()
    if built and not has_kernels_for(built, major, minor):
        return Row(
            f"GPU {index}",
            "warn",
            f"{detail}; this torch build has no {arch} kernels ({', '.join(built)})",
        )
    return Row(f"GPU {index}", "ok", detail)


def has_kernels_for(built: list[str], major: int, minor: int) -> bool:
    """A build's arch list runs on sm_<major><minor>: cubins of the same major and a minor no
    higher (sm_86 runs on sm_89; an arch-specific sm_90a only on 9.0), or PTX (compute_XY)
    of an architecture no newer than the GPU, which the driver compiles."""
    for arch in built:
        kind, _, rest = arch.partition("_")
        specific = rest.endswith("a")
        digits = rest.rstrip("af")
        if not digits.isdigit() or len(digits) < 2:
            continue
        arch_major, arch_minor = int(digits[:-1]), int(digits[-1])
        if kind == "compute" and (arch_major, arch_minor) <= (major, minor):
            return True
        if kind == "sm" and arch_major == major:
            if arch_minor == minor or (arch_minor < minor and not specific):
                return True
    return False


def devices() -> list[str]:
    """The devices to check: the CPU always, then every visible GPU."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(count))]


def ops_rows(gpu_needed: bool) -> list[Row]:
    """op_row for the CPU and each GPU; a GPU whose ops fail fails the doctor only when the
    trials need GPUs (else it is a warning: the trials run on the CPU)."""
    rows = []
    for device in devices():
        row = op_row(device)
        if row.status == "fail" and device != "cpu" and not gpu_needed:
            row = Row(row.check, "warn", row.detail)
        rows.append(row)
    return rows


def op_row(device: str) -> Row:
    """A matmul, roi_align and nms on `device`, each compared with its known result."""
    check = f"ops {device}"
    try:
        err = _matmul_error(device)
        if not err < MATMUL_RTOL:
            return Row(
                check,
                "fail",
                f"float32 matmul {MATMUL_SIZE}x{MATMUL_SIZE}: relative "
                f"error {err:.2g} (expected < {MATMUL_RTOL:g})",
            )
        problem = _roi_align_problem(device) or _nms_problem(device)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
    except Exception as exc:  # a missing kernel, an out-of-memory, a driver error: say which
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Row(check, "fail", f"{type(exc).__name__}: {first}")
    if problem:
        return Row(check, "fail", problem)
    return Row(
        check,
        "ok",
        f"matmul {MATMUL_SIZE}x{MATMUL_SIZE} (rel. error {err:.1g}), "
        "roi_align and nms give the expected results",
    )


def _matmul_error(device: str) -> float:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=gen)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=gen)
    want = a.double() @ b.double()
    got = (a.to(device) @ b.to(device)).cpu().double()
    return float((got - want).norm() / want.norm())


def _roi_align_problem(device: str) -> str:
    """On the ramp f(x, y) = x bilinear sampling is exact: each bin averages to its centre x."""
    from torchvision.ops import roi_align

    ramp = torch.arange(8, dtype=torch.float32).repeat(8, 1)[None, None].to(device)
    rois = torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]], device=device)  # batch index, x1 y1 x2 y2
    out = roi_align(ramp, rois, output_size=2, spatial_scale=1.0, sampling_ratio=2).cpu()
    want = torch.tensor([[2.0, 4.0], [2.0, 4.0]])
    if not torch.allclose(out[0, 0], want, atol=1e-5):
        return f"roi_align returned {out[0, 0].tolist()}, expected {want.tolist()}"
    return ""


def _nms_problem(device: str) -> str:
    """Boxes 0 and 1 overlap at IoU 0.68 > 0.5: nms keeps 0 and 2."""
    from torchvision.ops import nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep = nms(boxes.to(device), scores.to(device), 0.5).cpu().tolist()
    return "" if keep == [0, 2] else f"nms kept {keep}, expected [0, 2]"
