"""How to pack a sweep on this CPU: one run on all cores at a time, or one single-threaded
run per core at once?  Also measures memory format and bf16 autocast for the step.

Trains the seed's VGG-like model (blocks x layers given, width 32, batch 128, random
32x32 data) for a fixed number of steps and prints images/s of the whole machine for each
packing, side by side in one run.

    python benchmarks/packing.py --blocks 3 --layers 2 --steps 20
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time


def train_steps(threads: int, steps: int, blocks: int, layers: int, channels_last: bool,
                bf16: bool, start: mp.Event | None = None) -> float:
    """Images/s of one training process (after two warm-up steps)."""
    import torch
    import torch.nn.functional as F

    import cnnlab

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = cnnlab.create_model("vgg", blocks=blocks, layers=layers)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    step()
    if start is not None:
        start.wait()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return 128 * steps / (time.perf_counter() - t0)


def _worker(args, queue, start):
    queue.put(train_steps(*args, start=start))


def parallel(n: int, threads: int, *args) -> float:
    """Total images/s of ``n`` processes training at once."""
    ctx = mp.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=((threads, *args), queue, start))
             for _ in range(n)]
    for p in procs:
        p.start()
    time.sleep(8)  # let every process import torch and warm up before the clock starts
    start.set()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    common = (args.steps, args.blocks, args.layers)
    print(f"VGG-like {args.blocks}x{args.layers}, batch 128, {cores} cores")
    rows = [
        ("1 run x all threads, fp32, NCHW", parallel(1, cores, *common, False, False)),
        ("1 run x all threads, fp32, channels_last", parallel(1, cores, *common, True, False)),
        # bf16 is emulated without AVX-512 BF16 / AMX: few steps, it can be very slow
        ("1 run x all threads, bf16 autocast, NCHW",
         parallel(1, cores, max(2, args.steps // 10), *common[1:], False, True)),
        (f"{cores} runs x 1 thread, fp32, NCHW", parallel(cores, 1, *common, False, False)),
        (f"{cores} runs x 1 thread, fp32, channels_last", parallel(cores, 1, *common, True, False)),
    ]
    base = rows[0][1]
    for name, rate in rows:
        print(f"{name:<45} {rate:8.0f} img/s  {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
