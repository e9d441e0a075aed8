"""Accuracy after one epoch: cnnlab against the plain PyTorch loop, over seeds.

Issue 13 saw cnnlab reach 34.6 % against the plain loop's 38.8 % after one epoch from the
same initial weights (one seed, twice).  This script asks which factor that is, with a 2 x 2
design per seed (the four runs of a seed start from the same initial weights):

    cnnlab bf16 : cnnlab's defaults (bf16 autocast where the CPU computes it natively)
    cnnlab fp32 : the same with train.precision = fp32
    plain fp32  : the plain loop of benchmarks/throughput.py (DataLoader, per-sample crop+flip)
    plain bf16  : the plain loop under bf16 autocast (loss in fp32, as cnnlab computes it)

cnnlab's ``flip-crop`` and the plain loop's CropFlipDataset have the same semantics
(checked below on a batch: zero padding of 4 pixels in [0, 1] units before normalization,
offsets uniform in 0..8 of the padded image, a flip with probability 1/2, normalization by
the training split's mean and std afterwards); what differs between the two loaders is the
random stream (data order, augmentation draws), so the "loader" factor is the pipeline as a
whole (plus channels_last and the fused Adam kernel) and includes that chance.

Prints each variant's mean +- std of held-out accuracy, the two main effects (precision:
bf16 - fp32 averaged over the loaders; pipeline: cnnlab - plain averaged over the
precisions) with their standard errors over seeds (paired by seed), and a verdict line:
the gap is chance when it lies within 2 standard errors of 0; otherwise the main effects
beyond 2 standard errors with the gap's sign explain it.

    python benchmarks/accuracy_gap.py --seeds 5                # 5 seeds, all 40,000 images
    python benchmarks/accuracy_gap.py --seeds 3 --limit 10240 --test-limit 2000  # shorter
    python benchmarks/accuracy_gap.py --seeds 20 --variants "cnnlab bf16,plain fp32"  # the gap

With only the gap's two variants (cnnlab's default and the plain loop in fp32) a seed trains
twice instead of four times, so more seeds fit; the main effects then are not printed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from throughput import (  # noqa: E402 - the benchmarks directory is not a package
    SHARED,
    CropFlipDataset,
    cnnlab_config,
    load_data,
    model_factory,
    random_subset,
)

from cnnlab.data.augment import build_pipeline  # noqa: E402
from cnnlab.train import fit  # noqa: E402
from cnnlab.train.hardware import resolve_device, resolve_precision  # noqa: E402

VARIANTS = ("cnnlab bf16", "cnnlab fp32", "plain fp32", "plain bf16")


def same_augmentation(seed: int = 0) -> bool:
    """Every image of a random batch through cnnlab's flip-crop equals one crop of the
    zero-padded image at an offset in 0..8, flipped or not: the plain loop's semantics."""
    pipe = build_pipeline("flip-crop", 10, image_size=32)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(64, 3, 32, 32, generator=g)
    out, _ = pipe(x.clone(), torch.zeros(64, dtype=torch.long), g)
    pad = F.pad(x, (4, 4, 4, 4))  # (64, 3, 40, 40)
    for i in range(len(x)):
        views = [v for dy in range(9) for dx in range(9)
                 for c in [pad[i, :, dy:dy + 32, dx:dx + 32]] for v in (c, c.flip(-1))]
        if not any(torch.equal(v, out[i]) for v in views):
            return False
    return True


def plain_run(model, ds, mean, std, device, batch_size, lr, seed, amp) -> float:
    """One epoch of the plain loop (optionally under autocast ``amp``); held-out accuracy."""
    torch.manual_seed(seed)  # the DataLoader's order and the per-sample augmentation
    loader = torch.utils.data.DataLoader(
        CropFlipDataset(ds.train.images, ds.train.labels, mean, std), batch_size=batch_size,
        shuffle=True, drop_last=True)
    plain_steps(model, loader, device, lr, amp)
    return plain_accuracy(model, ds, mean, std, device, amp)


def plain_steps(model, batches, device, lr: float, amp=None) -> None:
    """The plain loop's training step (torch's Adam, loss in fp32) over ``batches``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def plain_accuracy(model, ds, mean, std, device, amp=None) -> float:
    """Held-out accuracy by the plain loop's evaluation (a DataLoader, no augmentation)."""
    model.eval()
    correct = 0
    test = torch.utils.data.DataLoader(
        CropFlipDataset(ds.test.images, ds.test.labels, mean, std, train=False), batch_size=512)
    with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        for x, y in test:
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    return correct / len(ds.test)


def effect(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of the per-seed differences a - b and its standard error (paired by seed)."""
    d = [x - y for x, y in zip(a, b)]
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.inf
    return statistics.fmean(d), se


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=SHARED, help="CIFAR-10 image-folder archive")
    p.add_argument("--seeds", type=int, default=5, help="seeds (initial weights and data order)")
    p.add_argument("--limit", type=int, default=0, help="training images (0 = all)")
    p.add_argument("--test-limit", type=int, default=0,
                   help="held-out images evaluated (0 = all 10,000); fewer is quicker but "
                        "noisier (binomial sd ~ 0.5 / sqrt(n))")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset of: " + ", ".join(VARIANTS)
                        + " (must hold 'cnnlab bf16' and 'plain fp32', whose gap is measured)")
    args = p.parse_args()
    if args.seeds < 2:
        p.error("--seeds must be at least 2 (a spread needs two runs)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not {"cnnlab bf16", "plain fp32"} <= set(variants):
        p.error(f"--variants: {', '.join(unknown) or 'the gap needs cnnlab bf16 and plain fp32'}"
                f" (choose from: {', '.join(VARIANTS)})")
    variants = [v for v in VARIANTS if v in variants]  # the printing order
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    ds, source = load_data(args.data, args.limit)
    if args.test_limit and args.test_limit < len(ds.test):
        ds.test = ds.test.subset(random_subset(len(ds.test), args.test_limit))
        source += f", {args.test_limit} random held-out images"
    mean, std = ds.train.mean_std()
    bf16 = resolve_precision("auto", device) == torch.bfloat16
    print(f"data: {source}; device {device}; {torch.get_num_threads()} threads; "
          f"{args.seeds} seeds x 1 epoch")
    print(f"augmentation: cnnlab flip-crop has the plain loop's semantics: "
          f"{'yes' if same_augmentation() else 'NO'} (checked on a batch)")
    if not bf16:
        print("note: this device has no native bf16, so cnnlab's default is fp32 here")
    acc: dict[str, list[float]] = {v: [] for v in variants}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        make = model_factory(device, seed)
        for prec in ("bf16", "fp32"):
            if f"cnnlab {prec}" in acc:
                cfg = cnnlab_config(device, args.batch_size, [f"train.precision={prec}"],
                                    seed=seed)
                acc[f"cnnlab {prec}"].append(
                    fit(make(), ds, cfg, progress=False).summary["test_acc"])
        for prec, amp in (("fp32", None), ("bf16", torch.bfloat16)):
            if f"plain {prec}" in acc:
                acc[f"plain {prec}"].append(plain_run(make(), ds, mean, std, device,
                                                      args.batch_size, 1e-3, seed, amp))
        print(f"seed {seed}: " + ", ".join(f"{v} {100 * acc[v][-1]:.2f}" for v in variants)
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)

    print("--- held-out accuracy after 1 epoch, mean +- std over seeds ---")
    for v in variants:
        a = acc[v]
        print(f"{v:12s}: {100 * statistics.fmean(a):6.2f} +- {100 * statistics.stdev(a):5.2f} %")
    gap, gap_se = effect(acc["cnnlab bf16"], acc["plain fp32"])
    both = {} if len(variants) < len(VARIANTS) else {  # the 2 x 2 design's main effects
        "precision (bf16 - fp32)": effect(
            [a + b for a, b in zip(acc["cnnlab bf16"], acc["plain bf16"])],
            [a + b for a, b in zip(acc["cnnlab fp32"], acc["plain fp32"])]),
        "pipeline (cnnlab - plain)": effect(
            [a + b for a, b in zip(acc["cnnlab bf16"], acc["cnnlab fp32"])],
            [a + b for a, b in zip(acc["plain fp32"], acc["plain bf16"])]),
    }
    print(f"gap cnnlab default - plain loop: {100 * gap:+.2f} +- {100 * gap_se:.2f} points "
          f"(standard error over seeds)")
    real = []  # (name, effect) of the effects beyond 2 standard errors
    for name, (m, se) in both.items():
        m, se = m / 2, se / 2  # the sums above add two runs per seed
        sig = abs(m) > 2 * se
        real += [(name, m)] if sig else []
        print(f"effect {name}: {100 * m:+.2f} +- {100 * se:.2f} points"
              f"{'  (beyond 2 standard errors)' if sig else ''}")
    sd_plain = statistics.stdev(acc["plain fp32"])
    within = abs(statistics.fmean(acc["cnnlab bf16"]) - statistics.fmean(acc["plain fp32"])) \
        <= sd_plain
    small = "; ".join(f"{name} is {100 * m:+.2f} points, beyond 2 standard errors"
                      for name, m in real)
    if abs(gap) <= 2 * gap_se:
        verdict = (f"the gap ({100 * gap:+.2f} points) is within chance (2 standard errors = "
                   f"{200 * gap_se:.2f})" + (f"; {small}" if small else ""))
    else:
        same_sign = [name for name, m in real if m * gap > 0]
        verdict = (f"the gap ({100 * gap:+.2f} points) is real and explained by "
                   f"{' and '.join(same_sign)}" if same_sign else
                   f"the gap ({100 * gap:+.2f} points) is real but no main effect explains it "
                   "(an interaction, or chance in the data order)")
    print(f"verdict: {verdict}; cnnlab's mean is "
          f"{'within' if within else 'NOT within'} one standard deviation of the plain "
          f"loop's ({100 * sd_plain:.2f} points)")


if __name__ == "__main__":
    main()
