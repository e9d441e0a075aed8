"""Pick the device and the fastest safe numeric settings for the hardware found."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

import torch

from cnnlab.errors import TrainingError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda if available, else mps, else cpu; a requested GPU must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(
            f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(
                f"device '{name}' requested but no CUDA GPU is available here; use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainingError(
                f"device '{name}' does not exist: {torch.cuda.device_count()} GPU(s) visible"
            )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise TrainingError(f"device '{name}' requested but MPS is not available here")
    return device


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX); without it bf16
    autocast on CPU is emulated and slower than fp32 (measured: see benchmarks/)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = plain fp32). Weights stay fp32 (master copy); batch-norm
    runs in fp32 under autocast."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise TrainingError("train.precision = fp16 needs a GPU; use bf16 or fp32 on CPU")
        return torch.float16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def resolve_channels_last(setting: str, device: torch.device) -> bool:
    """channels_last helps convolutions on GPUs (tensor cores) and with oneDNN on CPUs."""
    if setting in ("true", "false"):
        return setting == "true"
    return device.type in ("cuda", "cpu")


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


@functools.cache
def keep_freed_memory() -> bool:
    """Stop glibc's malloc from handing large freed blocks back to the kernel.

    By default glibc serves every block of 32 MiB or more (a batch of activations) with
    its own mmap and unmaps it on free, so the next op's output of the same size starts
    on fresh pages that the kernel must fault in and zero, page by page, on one core.
    Measured on a 2-core Xeon with AMX: relu on a 2000x64x31x31 bf16 tensor 105-110 ms ->
    33 ms; a 32 px epoch of the speedrun recipe 134 -> 119 s. Here the main heap serves
    every size (M_MMAP_MAX = 0), never trims its top (M_TRIM_THRESHOLD) and grows 256 MiB
    at a time (M_TOP_PAD); the process keeps its peak footprint in exchange (a 10,240-image
    speedrun peaked at 2.2 GB resident against 1.5 GB). A heap that cannot grow still falls
    back to mmap, so no allocation fails for it. Process-wide and applied once: a later
    run in the same process with the setting off does not undo it. True when applied,
    False where the C library is not glibc (a no-op there)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl has no mallopt knobs)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 256 << 20))
    return all(mallopt(param, value) == 1 for param, value in settings)


def resolve_keep_freed_memory(setting: str, device: torch.device) -> bool:
    """Apply :func:`keep_freed_memory` where ``setting`` asks for it ("auto": CPU
    training; GPU activations do not live in malloc's heap); True when it is in effect."""
    wanted = setting == "true" if setting in ("true", "false") else device.type == "cpu"
    return wanted and keep_freed_memory()


def resolve_finite_check_every(every: int, device: torch.device) -> int:
    """Steps between host checks for a non-finite loss: ``every`` when set, else 1 on CPU
    (reading a CPU tensor costs nothing) and 50 on an accelerator (each read waits for the
    device to drain its queue)."""
    if every > 0:
        return every
    return 1 if device.type == "cpu" else 50
