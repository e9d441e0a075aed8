"""Where a seed-depth cell's training step spends its time: each VGG block's forward +
backward and the fused Adam step, on one thread (the sweep's packing), bf16 autocast where
the CPU computes it natively, in four variants: everything channels_last (cnnlab's default),
the same with ``nn.Conv2d`` in place of cnnlab's ``Conv2d`` (whose dense-matrix path runs
the convolutions of maps smaller than the kernel, ``cnnlab.layers.conv``), channels_last
activations with NCHW weights, and everything NCHW.

A block's GFLOP/s (``count_flops`` x 3 for forward + backward, of which the forward is
one third and the backward, timed as the difference, two) counts every 3x3 tap, also
those that fall on the zero padding, so small maps (4x4, 2x2) can show more than the GEMM
peak when the kernel skips the padding (as cnnlab's small-map path does: every variant is
credited with ``nn.Conv2d``'s count, so the figures compare the same work).

    python benchmarks/block_profile.py               # the 5x3 cell, batch 128
    python benchmarks/block_profile.py --blocks 4 --layers 3
"""

from __future__ import annotations

import argparse
import time

import torch

from cnnlab.layers import stock_convs
from cnnlab.models.registry import count_flops
from cnnlab.models.vgg import vgg
from cnnlab.train.hardware import resolve_precision
from cnnlab.train.optim import FusedAdam


def seconds(fn, repeats: int) -> float:
    """Mean wall time of ``fn()`` after two warm-up calls."""
    fn()
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=6)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    amp = resolve_precision("auto", torch.device("cpu"))
    stock = stock_convs(vgg(blocks=args.blocks, layers=args.layers, width=32))
    shapes, x = [], torch.randn(args.batch, 3, 32, 32)
    with torch.no_grad():
        for block in stock.features:  # each block's input shape, (B, C, H, W)
            shapes.append(x.shape)
            x = block(x)
    # fwd + bwd FLOPs of each block, the same work for every variant: nn.Conv2d's, all taps
    flops = [3 * args.batch * count_flops(block, shape[-1], shape[1])
             for block, shape in zip(stock.features, shapes)]
    print(f"vgg {args.blocks}x{args.layers}, batch {args.batch}, {args.threads} thread(s), "
          f"{'bf16 autocast' if amp else 'fp32'}, torch {torch.__version__}")
    cl, nchw = torch.channels_last, torch.contiguous_format
    variants = (("channels_last", cl, cl, False), ("cl, nn.Conv2d", cl, cl, True),
                ("cl, NCHW wts", cl, nchw, False), ("NCHW", nchw, nchw, False))
    for name, fmt, weight_fmt, stock in variants:  # (label, activations, weights, nn.Conv2d)
        model = vgg(blocks=args.blocks, layers=args.layers, width=32)
        model = (stock_convs(model) if stock else model).to(memory_format=weight_fmt)
        total = 0.0
        for i, (block, shape) in enumerate(zip(model.features, shapes)):
            inp = torch.randn(shape).to(memory_format=fmt).requires_grad_(i > 0)

            def forward(block=block, inp=inp):
                with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                    return block(inp)

            t = seconds(lambda: forward().float().sum().backward(), args.repeats)
            t_fwd = seconds(forward, args.repeats)  # graph built, never run backward
            total += t
            print(f"  {name:13s} block {i + 1} on {shape[-1]}x{shape[-1]} maps, {shape[1]:3d} "
                  f"channels in: {1e3 * t:6.1f} ms, {flops[i] / t / 1e9:6.1f} GFLOP/s; "
                  f"forward {flops[i] / 3 / t_fwd / 1e9:6.1f}, backward "
                  f"{flops[i] * 2 / 3 / max(t - t_fwd, 1e-9) / 1e9:6.1f} GFLOP/s")
        params = list(model.parameters())
        for param in params:
            param.grad = torch.randn_like(param)  # in the parameter's own memory format
        opt = FusedAdam(params, lr=1e-3, fused=True)  # the trainer's Adam
        t = seconds(opt.step, args.repeats)
        print(f"  {name:13s} blocks {1e3 * total:.1f} ms; fused Adam step {1e3 * t:.1f} ms "
              f"({sum(q.numel() for q in params) / 1e6:.2f} M parameters)")


if __name__ == "__main__":
    main()
