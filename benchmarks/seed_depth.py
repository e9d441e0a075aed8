"""Per-cell efficiency of the seed-depth protocol and its projected wall time: cnnlab vs a
plain PyTorch loop, both against the machine's GEMM peak.

For every cell of the ``seed-depth`` preset (VGG blocks 1-5 x conv layers 1-3, width 32,
batch 128, no augmentation, Adam 1e-3) this trains on a slice of CIFAR-10 and measures:

- cnnlab's training images/s (``cnnlab.fit`` with the preset's config; ``--threads`` 1 by
  default, as in the sweep's 2 workers x 1 thread packing), from the second of two epochs
  so the first steps' warm-up is left out; beside it ("/cpu-s") the images per second of
  this process's CPU time, which is what a single-threaded run does on a core of its own:
  far above the wall-clock figure, the machine was busy with other work;
- the plain loop's images/s (``throughput.py``'s reference: fp32, NCHW, a DataLoader,
  ``nn.Conv2d`` without cnnlab's small-map path (``cnnlab.layers.conv``), each block's last
  ReLU before its pooling as the seed model had it (``cnnlab.models.plain``); with
  ``--ref-threads`` 2 by default, the way one would run the cells one after another);
- evaluation images/s of both (a bare forward pass at the evaluation batch size);
- each one's fraction of the GEMM peak (bf16 and fp32 measured here per thread count used):
  forward FLOPs per image x 3 (forward + backward) x images/s / peak.

It then projects the full protocol (3 repetitions x 3 epochs x 45,000 training images per
cell, 5,000 validation images per epoch and 10,000 test images per run: CIFAR-10's official
split, ``--split official``; or, with ``--split data``, the split the sweep makes of the
``--data`` archive, 36,000 / 4,000 / 10,000 for the CIFAR-10 JPEGs, which is what
``cnnlab sweep seed-depth --data folder:ARCHIVE`` trains on): cnnlab as the
makespan of its longest-processing-time schedule over ``--workers`` parallel workers (and,
for comparison, of the grid order it used before), the plain loop cell after cell; and
prints both times, their ratio and the protocol's average fraction of the GEMM peak.

    python benchmarks/seed_depth.py                         # all 15 cells, 2,048 images each
    python benchmarks/seed_depth.py --cells 1x1,3x2,5x3 --limit 4096
    python benchmarks/seed_depth.py --set train.channels_last=false
    python benchmarks/seed_depth.py --split data   # beside `cnnlab sweep seed-depth --data ...`
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import time

import torch

import cnnlab
from cnnlab.config import apply_overrides
from cnnlab.data.dataset import Dataset, with_splits
from cnnlab.data.sources.synthetic import toy_dataset
from cnnlab.experiments import load_spec
from cnnlab.experiments.executor import protocol_cost
from cnnlab.experiments.run import build_model
from cnnlab.models.plain import plain_pytorch
from cnnlab.models.registry import count_flops
from cnnlab.train import Callback, fit
from cnnlab.train.checkpoint import seed_everything
from cnnlab.train.hardware import resolve_channels_last, resolve_device, resolve_precision

sys.path.insert(0, os.path.dirname(__file__))
from machine import gemm_peak  # noqa: E402
from throughput import SHARED, reference_epoch  # noqa: E402 - the plain loop, shared

# the full protocol's images per run, (train, validation, test): CIFAR-10's official 50,000 /
# 10,000 with the preset's 10 % validation split
OFFICIAL_SPLIT = (45_000, 5_000, 10_000)


def peak_at(dtype: torch.dtype, threads: int, clock=time.perf_counter) -> float:
    """The GEMM peak (FLOP/s) on ``threads`` threads."""
    torch.set_num_threads(threads)
    return gemm_peak(dtype, clock=clock)


def eval_ips(model: torch.nn.Module, images: torch.Tensor, batch: int,
             amp: torch.dtype | None, channels_last: bool) -> float:
    """Images/s of a bare forward pass in eval mode over ``images`` (N, C, H, W float)."""
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = images.contiguous(memory_format=fmt)
    with torch.no_grad(), torch.autocast("cpu", dtype=amp or torch.bfloat16,
                                         enabled=amp is not None):
        model(x[:batch])  # warm-up
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
    return len(x) / (time.perf_counter() - t0)


class EpochCPUTime(Callback):
    """This process's CPU seconds of each epoch: with one thread, images per CPU-second is
    what the run would do on a core of its own (a check on a machine others share)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        self._t0 = time.process_time()

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        self.seconds.append(time.process_time() - self._t0)  # training (no validation here)


def makespan(durations: list[float], workers: int) -> float:
    """Wall time of running ``durations`` in the given order, each on the first free worker."""
    free = [0.0] * workers  # heap of the times the workers become free
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def parse_cells(text: str) -> set[tuple[int, int]] | None:
    """"1x1,5x3" -> {(1, 1), (5, 3)}; "" -> None (every cell)."""
    if not text:
        return None
    try:
        return {tuple(int(v) for v in c.lower().split("x")) for c in text.split(",")}
    except ValueError:
        raise SystemExit(f"--cells: expected BLOCKSxLAYERS items like 1x1,5x3, "
                         f"got {text!r}") from None


def load_data(path: str, limit: int, eval_limit: int,
              fractions: tuple[float, float]) -> tuple[Dataset, str, tuple[int, int, int]]:
    """The measurement slice, its description, and the (train, val, test) sizes the sweep's
    ``fractions`` (val, test) make of the whole dataset."""
    val_fraction, test_fraction = fractions
    if os.path.exists(path):
        ds = cnnlab.load_dataset(f"folder:{path}", test_fraction=test_fraction, split_seed=0)
        source = "CIFAR-10 JPEGs"
    else:
        ds = toy_dataset(n=limit + eval_limit, size=32, channels=3, classes=10, test=eval_limit)
        source = "synthetic 32x32 images (../shared/data not found)"
    whole = with_splits(ds, val_fraction, 0.0, seed=0)
    sizes = (len(whole.train), len(whole.val) if whole.val is not None else 0, len(ds.test))
    train = ds.train.subset(torch.arange(min(limit, len(ds.train))))
    test = ds.test.subset(torch.arange(min(eval_limit, len(ds.test))))
    return Dataset("slice", train, test=test), (
        f"{source}, first {len(train)} training images, {len(test)} for evaluation"), sizes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=SHARED, help="CIFAR-10 image-folder archive")
    p.add_argument("--limit", type=int, default=2048, help="training images per measurement")
    p.add_argument("--eval-limit", type=int, default=1024, help="images for evaluation speed")
    p.add_argument("--cells", default="", help="only these cells, e.g. 1x1,5x3 (default all)")
    p.add_argument("--threads", type=int, default=1, help="threads of each cnnlab worker")
    p.add_argument("--workers", type=int, default=2, help="cnnlab's parallel workers")
    p.add_argument("--ref-threads", type=int, default=2, help="threads of the plain loop")
    p.add_argument("--no-ref", action="store_true", help="skip the plain loop")
    p.add_argument("--split", choices=("official", "data"), default="official",
                   help="images of the projected protocol: CIFAR-10's official split "
                        "(45,000 / 5,000 / 10,000) or the one the sweep makes of --data")
    p.add_argument("--set", action="append", default=[], dest="overrides",
                   help="extra cnnlab config overrides, e.g. train.channels_last=false")
    args = p.parse_args()
    wanted = parse_cells(args.cells)
    spec = load_spec("seed-depth")
    cells = [c for c in spec.cells()
             if wanted is None or (c.params["model.blocks"], c.params["model.layers"]) in wanted]
    if not cells:
        raise SystemExit(f"--cells {args.cells!r} matches no seed-depth cell (1x1 .. 5x3)")
    d = spec.base_config().data
    ds, source, data_split = load_data(args.data, args.limit, args.eval_limit,
                                       (d.val_fraction, d.test_fraction))
    split = OFFICIAL_SPLIT if args.split == "official" else data_split
    mean, std = ds.train.mean_std()
    # evaluation inputs, normalized as both loops do: (N, C, H, W) float
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    x_eval = (ds.test.images.permute(0, 3, 1, 2).float() / 255 - m) / s

    device = resolve_device("cpu")
    base = apply_overrides(spec.base_config(), args.overrides) if args.overrides \
        else spec.base_config()
    amp = resolve_precision(base.train.precision, device)
    cl = resolve_channels_last(base.train.channels_last, device)
    peak_dtype = amp or torch.float32
    dname = {torch.bfloat16: "bf16", torch.float32: "fp32"}
    keys = [(dt, t) for dt in (torch.bfloat16, torch.float32)
            for t in sorted({args.threads, args.ref_threads})]
    peaks = {k: peak_at(*k) for k in keys}
    cpu_peak = peak_at(peak_dtype, 1, clock=time.process_time)  # one core, CPU time
    print(f"data: {source}; torch {torch.__version__}; cnnlab {dname[peak_dtype]} autocast"
          f"={amp is not None}, channels_last={cl}, {args.threads} thread(s) x "
          f"{args.workers} workers; plain loop fp32 NCHW, {args.ref_threads} thread(s)")
    rows = []
    for cell in cells:
        name = f"{cell.params['model.blocks']}x{cell.params['model.layers']}"
        cfg = apply_overrides(spec.run_config(cell, 0), {
            "data.val_fraction": 0.0, "train.epochs": 2, "train.threads": args.threads,
            "train.device": "cpu", "train.quiet": True, "train.checkpoint_every": 0})
        if args.overrides:
            cfg = apply_overrides(cfg, args.overrides)
        torch.set_num_threads(args.threads)
        seed_everything(cfg.train.seed)
        model = build_model(cfg, ds)
        flops = count_flops(model, 32, 3)  # forward, per image
        cpu = EpochCPUTime()
        result = fit(model, ds, cfg, progress=False, callbacks=[cpu])
        images = len(ds.train) // cfg.data.batch_size * cfg.data.batch_size  # drop_last
        row = {"cell": name, "flops": flops,
               "ips": result.history[-1]["images_per_s"],  # the second epoch: warm
               "cpu_ips": images / cpu.seconds[-1],
               "eval": eval_ips(result.model, x_eval, cfg.data.eval_batch_size, amp, cl)}
        if not args.no_ref:
            torch.set_num_threads(args.ref_threads)
            seed_everything(cfg.train.seed)
            plain = plain_pytorch(build_model(cfg, ds))  # nn.Conv2d, act before pool
            warm = Dataset("warm", ds.train.subset(torch.arange(256)), test=ds.test)
            reference_epoch(plain, warm, mean, std, device, 128, 1e-3, augment=False)
            rate, _ = reference_epoch(plain, ds, mean, std, device, 128, 1e-3, augment=False)
            row["ref_ips"] = rate.mean  # the whole epoch, as cnnlab's history figure
            row["ref_eval"] = eval_ips(plain, x_eval, cfg.data.eval_batch_size, None, False)
        rows.append(row)
        print(f"  {name}: cnnlab {row['ips']:.0f} img/s, plain {row.get('ref_ips', 0):.0f}")
        sys.stdout.flush()
        # the peak is the best seen: on a shared machine one sample may run beside others
        peaks = {k: max(v, peak_at(*k)) for k, v in peaks.items()}
        cpu_peak = max(cpu_peak, peak_at(peak_dtype, 1, clock=time.process_time))
    print("GEMM peak (2048^3, best of the samples taken between cells): " + ", ".join(
        f"{dname[dt]} {t} thread(s) {v / 1e9:.0f} GFLOP/s" for (dt, t), v in peaks.items())
        + f"; {dname[peak_dtype]} 1 thread per CPU-second {cpu_peak / 1e9:.0f} GFLOP/s")
    print()
    head = (f"{'cell':>5} {'MFLOP':>7} | {'cnnlab':>7} {'eval':>7} {'peak%':>6} | "
            f"{'/cpu-s':>7} {'peak%':>6}")
    if not args.no_ref:
        head += f" | {'plain':>7} {'eval':>7} {'peak%':>6} | {'ratio':>5}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        frac = 3 * r["flops"] * r["ips"] / peaks[(peak_dtype, args.threads)]
        ref = ""
        if not args.no_ref:
            r_frac = 3 * r["flops"] * r["ref_ips"] / peaks[(torch.float32, args.ref_threads)]
            ref = (f" | {r['ref_ips']:7.0f} {r['ref_eval']:7.0f} {100 * r_frac:5.1f}% | "
                   f"{r['ips'] / r['ref_ips']:5.2f}")
        cpu_frac = 3 * r["flops"] * r["cpu_ips"] / cpu_peak
        print(f"{r['cell']:>5} {r['flops'] / 1e6:7.1f} | {r['ips']:7.0f} {r['eval']:7.0f} "
              f"{100 * frac:5.1f}% | {r['cpu_ips']:7.0f} {100 * cpu_frac:5.1f}%{ref}")
    project(rows, spec.reps, spec.base_config().train.epochs, split, args, peaks, peak_dtype,
            cpu_peak)


def run_seconds(ips: float, eval_ips_: float, epochs: int, split: tuple[int, int, int]) -> float:
    """One run of the full protocol: training plus validation each epoch plus the test."""
    n_train, n_val, n_test = split
    return epochs * n_train / ips + (epochs * n_val + n_test) / eval_ips_


def project(rows: list[dict], reps: int, epochs: int, split: tuple[int, int, int], args,
            peaks: dict, peak_dtype: torch.dtype, cpu_peak: float) -> None:
    n_train, n_val, n_test = split
    flops = sum(reps * protocol_cost(r["flops"], epochs, split) for r in rows)  # the sweep's
    runs = [run_seconds(r["ips"], r["eval"], epochs, split) for r in rows for _ in range(reps)]
    lpt = makespan(sorted(runs, reverse=True), args.workers)
    grid = makespan(runs, args.workers)
    cores = args.workers * args.threads
    frac = flops / lpt / (peaks[(peak_dtype, args.threads)] * args.workers)
    print(f"\nprojected protocol ({len(rows)} cell(s) x {reps} reps x {epochs} epochs x "
          f"{n_train:,} images + {n_val:,} validation each epoch + {n_test:,} test; "
          f"{flops / 1e15:.2f} PFLOP):")
    print(f"  cnnlab, {args.workers} workers x {args.threads} thread(s), LPT order : "
          f"{lpt:7.0f} s  ({100 * frac:.0f} % of the GEMM peak of {cores} core(s); "
          f"grid order {grid:.0f} s, busy-time lower bound {sum(runs) / args.workers:.0f} s)")
    if args.threads == 1:  # each worker on a core of its own: the CPU-time figures
        runs = [run_seconds(r["cpu_ips"], r["eval"], epochs, split) for r in rows
                for _ in range(reps)]
        idle = makespan(sorted(runs, reverse=True), args.workers)
        print(f"  cnnlab as above, on otherwise idle cores    : {idle:7.0f} s  "
              f"({100 * flops / idle / (cpu_peak * args.workers):.0f} % of the CPU-time GEMM "
              f"peak; training at images per CPU-second, evaluation as measured)")
    if args.no_ref:
        return
    plain = sum(run_seconds(r["ref_ips"], r["ref_eval"], epochs, split) for r in rows
                for _ in range(reps))
    p_frac = flops / plain / peaks[(torch.float32, args.ref_threads)]
    print(f"  plain loop, cell after cell, {args.ref_threads} thread(s)  : {plain:7.0f} s  "
          f"({100 * p_frac:.0f} % of the fp32 GEMM peak of {args.ref_threads} thread(s))")
    print(f"  ratio: cnnlab {plain / lpt:.2f}x faster than the plain loop")


if __name__ == "__main__":
    main()
