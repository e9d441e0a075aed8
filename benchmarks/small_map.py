"""Where ``cnnlab.layers.Conv2d``'s dense-matrix path pays: one 3x3 convolution (padding 1),
forward + backward, as ``F.conv2d`` (oneDNN) and as ``small_map_conv2d`` (one GEMM), side by
side in alternating rounds, on the maps around the boundary (1x1 and 2x2 maps: fewer pixels
than taps; 3x3: as many; 4x4: more), at the shapes that decide where ``Conv2d`` takes the
path: the seed-depth VGG's fifth block (2x2 maps: taken) and speednet's last convolution
(3x3 maps at 32 px: not taken).

Inputs and weights are channels_last, under bf16 autocast where the CPU computes bf16
natively (fp32 otherwise), as in training. GFLOP/s counts the convolution's nominal work
(every tap, also those on the zero padding) for both, so the two columns compare one job.
The last column says whether ``Conv2d`` takes the path on that map.

    python benchmarks/small_map.py                  # 2 threads
    python benchmarks/small_map.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

from cnnlab.layers import Conv2d, small_map_conv2d
from cnnlab.train.hardware import resolve_precision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from block_profile import seconds  # noqa: E402 - the same timing as the block profile
from machine import cpu_name  # noqa: E402

# (label, batch, channels in, channels out, map size)
SHAPES = [
    ("vgg 5x3 block 5, first conv", 128, 256, 512, 2),
    ("vgg 5x3 block 5, later convs", 128, 512, 512, 2),
    ("1x1 map", 128, 512, 512, 1),
    ("speednet last conv, 32 px", 1024, 256, 256, 3),
    ("3x3 map, 512 channels", 128, 512, 512, 3),
    ("4x4 map", 128, 256, 256, 4),
]


def step_seconds(conv, x: torch.Tensor, weight: torch.Tensor, amp: torch.dtype | None,
                 repeats: int) -> float:
    """Mean wall time of forward + backward of ``conv(x, weight)``."""
    def step():
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            out = conv(x, weight)
        out.float().sum().backward()

    return seconds(step, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per shape")
    p.add_argument("--repeats", type=int, default=5, help="steps timed per round")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    amp = resolve_precision("auto", torch.device("cpu"))
    print(f"{cpu_name()}; torch {torch.__version__}, {args.threads} thread(s), "
          f"{'bf16 autocast' if amp else 'fp32'}, channels_last; best of {args.rounds} "
          f"alternating round(s) of {args.repeats} steps, forward + backward")
    variants = {"F.conv2d": lambda x, w: F.conv2d(x, w, padding=1),
                "small_map_conv2d": lambda x, w: small_map_conv2d(x, w, None, (1, 1))}
    print(f"{'shape':29s} {'batch':>5s} {'map':>4s} | {'F.conv2d':>9s} {'dense':>9s} | "
          f"{'GFLOP/s':>13s} | dense speed-up | Conv2d takes it")
    for label, batch, c_in, c_out, size in SHAPES:
        cl = torch.channels_last
        weight = torch.randn(c_out, c_in, 3, 3).to(memory_format=cl).requires_grad_()
        x = torch.randn(batch, c_in, size, size).to(memory_format=cl).requires_grad_()
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, conv in variants.items():
                times[name].append(step_seconds(conv, x, weight, amp, args.repeats))
        stock_t, dense_t = min(times["F.conv2d"]), min(times["small_map_conv2d"])
        flops = 3 * 2 * batch * c_in * c_out * 9 * size * size  # fwd + bwd, every tap
        takes = Conv2d(c_in, c_out, 3, padding=1).uses_small_map_path(x)
        print(f"{label:29s} {batch:5d} {size:2d}x{size} | {1e3 * stock_t:6.1f} ms "
              f"{1e3 * dense_t:6.1f} ms | {flops / stock_t / 1e9:5.0f} -> "
              f"{flops / dense_t / 1e9:5.0f} | {stock_t / dense_t:13.2f}x | "
              f"{'yes' if takes else 'no'}")


if __name__ == "__main__":
    main()
