"""What every benchmark prints about the machine: the CPU's name and its GEMM peak."""

from __future__ import annotations

import platform
import time

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gemm_peak(dtype: torch.dtype, sizes=(2048,), reps: int = 3, device=None,
              clock=time.perf_counter) -> float:
    """Best FLOP/s of ``torch.mm`` of two n x n matrices (2 n^3 FLOPs) over ``sizes``, on the
    current thread count, timed by ``clock`` (``time.process_time`` with one thread: the
    speed on a core of its own, even on a shared machine)."""
    device = torch.device(device or "cpu")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    g = torch.Generator(device=device).manual_seed(0)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, generator=g, device=device).to(dtype)
        b = torch.randn(n, n, generator=g, device=device).to(dtype)
        torch.mm(a, b)  # warm-up: packing buffers, kernel selection
        sync()
        for _ in range(reps):
            t0 = clock()
            torch.mm(a, b)
            sync()
            best = max(best, 2 * n**3 / (clock() - t0))
    return best
