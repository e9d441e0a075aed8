"""Loader throughput: augmented, normalized float batches per second from uint8 images.

    python benchmarks/loader.py [--batch 512] [--rounds 3] [--data SPEC] [--device cpu]

Uses the CIFAR-10 training archive in ../shared/data when it is there (through
``cnnlab.load_dataset``), else random uint8 images of the same shape (50,000 x 32 x 32
x 3).  Prints images/s for the loader without augmentation, with the ``flip-crop``
preset and with ``modern``, next to a plain PyTorch reference loop that does the same
flip-crop work with the straightforward ops (pad + gather crop, torch.where flip,
normalize, contiguous); each figure is the best of ``--rounds`` interleaved epochs, so
the ratios are measured side by side on the same busy machine.  Target: >= 50,000
images/s for flip-crop at batch 512 on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data.augment import build_pipeline
from cnnlab.data.dataset import ImageSet
from cnnlab.data.loader import DeviceLoader

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train.tar.gz"
MEAN, STD = (0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)


def load(spec: str | None) -> tuple[ImageSet, str]:
    """The benchmark images: ``spec``, else the shared CIFAR-10 archive, else random."""
    if spec is None and CIFAR.is_file():
        spec = f"folder:{CIFAR}"
    if spec is not None:
        from cnnlab.data import load_dataset

        return load_dataset(spec, test_fraction=0.0).train, spec
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50_000, 32, 32, 3), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (50_000,), generator=g)
    return ImageSet(images, labels, [str(i) for i in range(10)]), "random uint8 (50000, 32, 32, 3)"


def reference_epoch(data: ImageSet, batch: int, seed: int, device: torch.device) -> int:
    """Plain PyTorch: the same flip-crop work with the straightforward ops, one epoch."""
    images, labels = data.images.to(device), data.labels.to(device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    g = torch.Generator(device=device).manual_seed(seed)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    order = order.to(device)
    pad, seen = 4, 0
    for start in range(0, len(images) - batch + 1, batch):
        idx = order[start : start + batch]
        x = images[idx].permute(0, 3, 1, 2).float().div_(255)  # (B, C, H, W)
        _ = labels[idx]
        b, c, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=device)
        rows = torch.arange(h, device=device) + dy[:, None]  # (B, H)
        cols = torch.arange(w, device=device) + dx[:, None]  # (B, W)
        flat = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).flatten(1)
        x = padded.flatten(2).gather(2, flat[:, None, :].expand(b, c, h * w)).view(b, c, h, w)
        flip = torch.rand(b, generator=g, device=device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = ((x - mean) / std).contiguous()
        seen += b
    return seen


def loader_epoch(loader: DeviceLoader) -> int:
    seen = 0
    for x, _ in loader:
        seen += len(x)
    return seen


def timed(fn) -> float:
    """Images per second of one call of ``fn`` (which returns the images it produced)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    n = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved epochs per setting")
    parser.add_argument("--data", default=None, help="dataset spec (default: shared CIFAR-10)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data, source = load(args.data)
    h = data.images.shape[1]
    print(f"data: {source}, {tuple(data.images.shape)} uint8; batch {args.batch}; "
          f"device {device}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f}")

    settings = {
        "loader, no augmentation": DeviceLoader(data, args.batch, mean=MEAN, std=STD,
                                                device=device),
        "loader, flip-crop": DeviceLoader(data, args.batch, mean=MEAN, std=STD, device=device,
                                          augment=build_pipeline("flip-crop", 10, h)),
        "loader, modern": DeviceLoader(data, args.batch, mean=MEAN, std=STD, device=device,
                                       augment=build_pipeline("modern", 10, h)),
    }
    best = {name: 0.0 for name in [*settings, "reference flip-crop (plain torch)"]}
    for r in range(args.rounds):
        for name, loader in settings.items():
            loader.set_epoch(r)
            best[name] = max(best[name], timed(lambda loader=loader: loader_epoch(loader)))
        ref = "reference flip-crop (plain torch)"
        best[ref] = max(best[ref], timed(
            lambda r=r: reference_epoch(data, args.batch, r, device)))
    width = max(map(len, best))
    for name, rate in best.items():
        print(f"{name:<{width}}  {rate:>10,.0f} images/s")
    ratio = best["loader, flip-crop"] / best["reference flip-crop (plain torch)"]
    target = "meets" if best["loader, flip-crop"] >= 50_000 else "misses"
    print(f"flip-crop loader vs plain reference: {ratio:.2f}x; "
          f"{target} the 50,000 images/s target (load average {os.getloadavg()[0]:.2f}: "
          f"figures drop when other jobs share the CPU)")


if __name__ == "__main__":
    main()
