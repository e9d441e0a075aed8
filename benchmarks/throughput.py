"""Training throughput against the machine's ceiling, measured side by side in one process.

    cnnlab : the training step inside ``cnnlab.fit`` (on-device loader, flip-crop
             augmentation, bookkeeping), default settings (bf16 autocast where the CPU
             computes it natively, channels_last);
    plain  : what a tutorial writes: fp32, default memory format, a
             ``torch.utils.data.DataLoader`` with a per-sample random crop and flip;
    bare   : the fastest bare training step: the same model and batch size, ONE pre-made
             batch already on the device (no data loading, no bookkeeping), Adam, for every
             precision (fp32 / bf16 autocast) x memory format (NCHW / channels_last) x
             ``torch.compile`` (off / on; compile warm-up reported on its own line);
    GEMM   : the machine's matrix-product peak (``torch.mm`` of large square matrices, best
             of several) in bf16 and fp32 at the current thread count.

The model is the seed's VGG-like network (3 blocks x 2 layers, width 32) at batch 128 on
CIFAR-10 (the JPEG copy in ../shared when present, else synthetic images); cnnlab and the
plain loop train one epoch from the same initial weights and are evaluated on the same
held-out split.

Throughput is timed per window of 10 steps (every step of a window: loader, augmentation,
forward, backward, update).  The machine may be shared, so each variant's figure is its
BEST window (the least disturbed one; median window and mean beside it); the bare
variants are timed in turns, one window each per round.  cnnlab's fraction of the bare
step is measured PAIRED: during cnnlab's epoch one window of the fastest bare step runs
between two of cnnlab's windows (outside them), and the median ratio of adjacent windows
is robust to the load of a shared machine.

cnnlab's allocator setting (``train.keep_freed_memory``: glibc keeps freed blocks resident
instead of unmapping them) is process-wide, so it is applied before anything is timed,
when cnnlab's configuration turns it on: every variant then runs under the same allocator.

    python benchmarks/throughput.py                  # everything (compile takes minutes)
    python benchmarks/throughput.py --quick          # short run: fewer images, no compile
    python benchmarks/throughput.py --limit 10000 --compile off
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import cnnlab
from cnnlab.config import apply_overrides
from cnnlab.data.sources.synthetic import toy_dataset
from cnnlab.models.plain import plain_pytorch
from cnnlab.models.registry import count_flops
from cnnlab.train import Callback, fit
from cnnlab.train.hardware import cpu_flags, resolve_device, resolve_keep_freed_memory

sys.path.insert(0, os.path.dirname(__file__))
from machine import cpu_name, gemm_peak  # noqa: E402 - shared by the benchmarks

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                      "cifar10-train.tar.gz")
WINDOW = 10  # steps per timing window
now = time.perf_counter  # the clock of every window: wall time, or --clock cpu


# ---------------------------------------------------------------- timing statistics
@dataclass
class Rate:
    """Images/s of one variant: best window, median window, and the whole-run mean."""

    best: float
    median: float
    mean: float

    def __str__(self) -> str:
        return f"{self.best:7.0f} img/s (median window {self.median:5.0f}, mean {self.mean:5.0f})"


def rate_from_stamps(stamps: list[float], batch: int, window: int = WINDOW,
                     skip: int = 2) -> Rate:
    """``stamps``: perf_counter() before the first step and after every step (seconds).

    The first ``skip`` steps (one-off set-up: oneDNN primitives, allocator) count in the
    mean but start no window."""
    steps = len(stamps) - 1
    mean = steps * batch / (stamps[-1] - stamps[0])
    lo = min(skip, max(steps - window, 0))
    rates = [window * batch / (stamps[i + window] - stamps[i])
             for i in range(lo, steps - window + 1, window)]
    rates = rates or [mean]
    return Rate(max(rates), statistics.median(rates), mean)


# ---------------------------------------------------------------- the plain loop
class CropFlipDataset(torch.utils.data.Dataset):
    """Per-sample augmentation in __getitem__, the way most PyTorch tutorials do it."""

    def __init__(self, images, labels, mean, std, train=True):
        self.images, self.labels, self.train = images, labels, train  # uint8 (N, H, W, C)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i].permute(2, 0, 1).float() / 255  # (C, H, W) in [0, 1]
        if self.train:
            x = F.pad(x, (4, 4, 4, 4))  # zeros (black) before normalization
            dy, dx = torch.randint(0, 9, (2,)).tolist()
            x = x[:, dy:dy + 32, dx:dx + 32]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        return (x - self.mean) / self.std, self.labels[i]


def reference_epoch(model, ds, mean, std, device, batch_size, lr, seed: int = 0,
                    augment: bool = True):
    """One epoch of the plain loop (crop + flip unless ``augment`` is False); returns
    (Rate, held-out accuracy).  ``seed`` seeds the DataLoader's shuffling and the
    per-sample augmentation (torch's global generator)."""
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        CropFlipDataset(ds.train.images, ds.train.labels, mean, std, train=augment),
        batch_size=batch_size,
        shuffle=True, drop_last=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    stamps = [now()]
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(now())
    model.eval()
    correct = 0
    test = torch.utils.data.DataLoader(
        CropFlipDataset(ds.test.images, ds.test.labels, mean, std, train=False), batch_size=512)
    with torch.no_grad():
        for x, y in test:
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    return rate_from_stamps(stamps, batch_size), correct / len(ds.test)


# ---------------------------------------------------------------- the bare step
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class BareStep:
    """The bare training step in one setting: the model, fused Adam (the fastest Adam
    kernel) and ONE batch already on the device; nothing else.

    ``warm_up()`` runs the first steps (compiling when ``compiled``); ``window(k)`` times
    k steps and returns images/s.  Variants are timed window by window in turns, so that
    each sees the same share of a shared machine's disturbances."""

    def __init__(self, make_model, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                 precision: str, channels_last: bool, compiled: bool):
        self.precision, self.channels_last, self.compiled = precision, channels_last, compiled
        self.device = device
        model = make_model()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.model, self.x, self.y = model, x, y
        self.step_model = model
        fused = device.type in ("cpu", "cuda")
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
        self.amp = torch.bfloat16 if precision == "bf16" else None
        self.rates: list[float] = []
        self.warmup_s = 0.0
        self.note = ""

    @property
    def label(self) -> str:
        return (f"{self.precision:4s} {'channels_last' if self.channels_last else 'NCHW':13s} "
                f"{'compile' if self.compiled else 'eager':7s}")

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.step_model(self.x)
        loss = F.cross_entropy(out.float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def warm_up(self) -> bool:
        """The first step (and the compile), then two more; False when it failed."""
        t0 = time.perf_counter()  # wall: compile works in other processes
        try:
            if self.compiled:
                self.step_model = torch.compile(self.model)
            self.step()
            _sync(self.device)
        except Exception as e:  # noqa: BLE001 - a failed compile is reported, not fatal
            self.note = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
            return False
        self.warmup_s = time.perf_counter() - t0
        for _ in range(2):  # the steps right after the first still settle (allocator)
            self.step()
        _sync(self.device)
        return True

    def window(self, k: int = WINDOW) -> float:
        t = now()
        for _ in range(k):
            self.step()
        _sync(self.device)
        rate = k * len(self.x) / (now() - t)
        self.rates.append(rate)
        return rate

    def rate(self) -> Rate:
        return Rate(max(self.rates), statistics.median(self.rates),
                    statistics.fmean(self.rates))


class StepClock(Callback):
    """Stamps the time at the start of each window of cnnlab's steps (loader included)
    and after its last step.  With ``partner`` (a :class:`BareStep`), one bare window runs
    between two of cnnlab's windows, outside them: adjacent windows share the machine's
    state, so their ratio is robust to the load of a shared machine."""

    def __init__(self, batch: int, partner: BareStep | None = None):
        self.batch, self.partner = batch, partner
        self.rates: list[float] = []  # cnnlab's windows, img/s
        self.pairs: list[tuple[float, float]] = []  # (cnnlab window, the bare one after it)
        self._t0 = 0.0
        self._n = 0

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        self._t0, self._n = now(), 0

    def on_batch_end(self, trainer, step: int, loss) -> None:
        self._n += 1
        if self._n < WINDOW:
            return
        rate = self._n * self.batch / (now() - self._t0)
        self.rates.append(rate)
        if self.partner is not None:
            self.pairs.append((rate, self.partner.window()))
        self._t0, self._n = now(), 0

    def rate(self) -> Rate:
        r = self.rates[1:] or self.rates  # the first window holds the one-off set-up
        return Rate(max(r), statistics.median(r), statistics.fmean(r))


# ---------------------------------------------------------------- data and models
def load_data(path: str, limit: int):
    """(dataset, description): the CIFAR-10 JPEGs (40,000 / 10,000) or synthetic images."""
    if os.path.exists(path):
        ds = cnnlab.load_dataset(f"folder:{path}", test_fraction=0.2, split_seed=0)
        source = "CIFAR-10 JPEGs (40,000 train / 10,000 held out)"
    else:
        ds = toy_dataset(n=10000, size=32, channels=3, classes=10, test=2000)
        source = "synthetic 32x32 images (../shared/data not found)"
    if limit and limit < len(ds.train):
        ds.train = ds.train.subset(random_subset(len(ds.train), limit))
        source += f", {limit} random training images"
    return ds, source


def random_subset(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """``k`` of ``n`` indices drawn at random (seeded), in ascending order.  Not the first
    k: the folder splits are stored class by class, so the first k hold a few classes."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:k].sort().values


def model_factory(device: torch.device, seed: int = 0):
    """A function building the benchmark's model with the initial weights of ``seed``."""
    def make():
        torch.manual_seed(seed)
        return cnnlab.create_model("vgg", num_classes=10, blocks=3, layers=2).to(device)
    return make


def cnnlab_config(device: torch.device, batch_size: int, overrides=(), seed: int = 0):
    cfg = cnnlab.RunConfig().set(**{
        "model.blocks": 3, "model.layers": 2, "data.batch_size": batch_size,
        "data.augment": "flip-crop", "data.val_fraction": 0.0, "optim.lr": 1e-3,
        "train.epochs": 1, "train.device": str(device), "train.quiet": True,
        "train.seed": seed,
    })
    return apply_overrides(cfg, list(overrides)) if overrides else cfg


def first_batch(ds, mean, std, batch: int, device: torch.device):
    """The first ``batch`` training images, normalized, as one (B, 3, H, W) batch."""
    x = ds.train.images[:batch].permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return x.to(device), ds.train.labels[:batch].to(device)


# ---------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=SHARED, help="CIFAR-10 image-folder archive")
    p.add_argument("--limit", type=int, default=None,
                   help="training images (0 = all; default all, 6400 with --quick)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    p.add_argument("--compile", choices=("on", "off"), default=None,
                   help="also time the bare step under torch.compile (default on; off "
                        "with --quick)")
    p.add_argument("--bare-seconds", type=float, default=None,
                   help="seconds of timed steps per bare variant, at least (default 8, 2 "
                        "with --quick)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: time windows by the main thread's CPU time (needs --threads 1: "
                        "all work then runs on that thread), which other processes on a "
                        "shared machine barely disturb")
    p.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    p.add_argument("--skip-plain", action="store_true", help="leave out the plain loop")
    p.add_argument("--set", action="append", default=[], dest="overrides",
                   help="extra cnnlab config overrides, e.g. train.precision=fp32")
    args = p.parse_args()
    limit = args.limit if args.limit is not None else (6400 if args.quick else 0)
    compile_on = (args.compile or ("off" if args.quick else "on")) == "on"
    seconds = args.bare_seconds if args.bare_seconds is not None else (2 if args.quick else 8)
    min_windows = 2 if args.quick else 4
    if args.threads:
        torch.set_num_threads(args.threads)
    global now
    if args.clock == "cpu":
        if torch.get_num_threads() != 1:
            p.error("--clock cpu needs --threads 1 (other threads' work is not on the clock)")
        now = time.thread_time
    device = resolve_device(args.device)
    cfg = cnnlab_config(device, args.batch_size, args.overrides)
    # process-wide: on before anything is timed, so every variant shares the allocator
    kept = resolve_keep_freed_memory(cfg.train.keep_freed_memory, device)
    ds, source = load_data(args.data, limit)
    mean, std = ds.train.mean_std()
    make_model = model_factory(device)
    b = args.batch_size
    fwd = count_flops(make_model(), 32)  # forward FLOPs per image
    train_flops = 3 * fwd  # forward + backward (backward ~ 2x forward)

    flags = cpu_flags()
    bf16_native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    print(f"cpu     : {cpu_name()}; native bf16: "
          f"{', '.join(bf16_native) if bf16_native else 'no (no avx512_bf16 / amx_bf16)'}; "
          f"{torch.get_num_threads()} threads; device {device}; torch {torch.__version__}")
    if device.type == "cuda":
        print(f"gpu     : {torch.cuda.get_device_name(device)}")
    print(f"data    : {source}; batch {b}")
    allocator = ("freed blocks kept resident (train.keep_freed_memory), for every variant"
                 if kept else "the C library's defaults")
    print(f"malloc  : {allocator}")
    print(f"model   : vgg 3 blocks x 2 layers, width 32: {fwd / 1e6:.1f} MFLOP forward per "
          f"image (count_flops); training counted as 3 x forward = {train_flops / 1e6:.1f} "
          f"MFLOP per image")
    print(f"timing  : {'main-thread CPU time' if args.clock == 'cpu' else 'wall time'}; best "
          f"window of {WINDOW} steps per variant (median window and mean in brackets); a "
          f"shared machine makes every wall-time figure noisy")

    # GEMM peak
    sizes = [2048] if args.quick else [2048, 3072, 4096]
    reps = 3 if args.quick else 5
    peak = {"bf16": gemm_peak(torch.bfloat16, sizes, reps, device, now) / 1e9,
            "fp32": gemm_peak(torch.float32, sizes, reps, device, now) / 1e9}
    print(f"GEMM    : bf16 {peak['bf16']:7.1f} GFLOP/s, fp32 {peak['fp32']:7.1f} GFLOP/s "
          f"(torch.mm n = {', '.join(map(str, sizes))}, best of {reps}; measured again at "
          f"the end, the higher counts)", flush=True)

    # the bare step, every combination, timed window by window in turns
    x, y = first_batch(ds, mean, std, b, device)
    variants = [BareStep(make_model, x, y, device, precision, cl, compiled)
                for compiled in ((False, True) if compile_on else (False,))
                for precision in ("fp32", "bf16") for cl in (False, True)]
    ready = []
    for v in variants:
        if v.warm_up():
            ready.append(v)
            if v.compiled:
                print(f"compile : {v.label}  warm-up (compile + first step) {v.warmup_s:.1f} s",
                      flush=True)
        else:
            print(f"bare    : {v.label}  {v.note}")
    t0 = now()
    rounds = 0
    while rounds < min_windows or now() - t0 < seconds * len(ready):
        for v in ready:
            v.window()
        rounds += 1
    for v in ready:
        print(f"bare    : {v.label}  {v.rate()}", flush=True)
    if not compile_on:
        print("bare    : torch.compile variants skipped (--compile off)")
    best = max(ready, key=lambda v: v.rate().best)

    # cnnlab's fit, one window of the fastest bare step between two of its windows
    clock = StepClock(b, partner=best)
    result = fit(make_model(), ds, cfg, callbacks=[clock], progress=False)
    s = result.summary
    ours = clock.rate()
    prec = "bf16" if s["precision"] == "bfloat16" else "fp32"
    print(f"cnnlab  : {ours}  test acc {s['test_acc']:.4f}  "
          f"({s['precision']}, channels_last={s['channels_last']})", flush=True)
    paired = [c / r for c, r in clock.pairs[1:] or clock.pairs]
    print(f"paired  : {len(paired)} cnnlab windows each followed by a window of the fastest "
          f"bare step: cnnlab / bare median {statistics.median(paired):.3f} "
          f"(range {min(paired):.3f}-{max(paired):.3f})")
    best_rate = best.rate()  # now including the windows run between cnnlab's

    # the plain loop
    plain = None
    if not args.skip_plain:
        plain, plain_acc = reference_epoch(plain_pytorch(make_model()), ds, mean, std, device,
                                           b, 1e-3)
        print(f"plain   : {plain}  test acc {plain_acc:.4f}  (fp32, NCHW, DataLoader with "
              f"per-sample crop+flip)")

    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        peak[name] = max(peak[name], gemm_peak(dtype, sizes, reps, device, now) / 1e9)
    print(f"GEMM    : bf16 {peak['bf16']:7.1f} GFLOP/s, fp32 {peak['fp32']:7.1f} GFLOP/s "
          f"(the higher of the two measurements)")

    def of_peak(rate: float, precision: str) -> str:
        return (f"{rate * train_flops / 1e9:6.1f} GFLOP/s = "
                f"{rate * train_flops / 1e9 / peak[precision]:.3f} of the {precision} GEMM peak")

    print("--- summary ---")
    print(f"fastest bare step : {best.label.strip()}: {best_rate.best:.0f} img/s (best window)")
    print(f"cnnlab            : {ours.best:.0f} img/s (best window)")
    print(f"cnnlab / bare     : {statistics.median(paired):.3f} paired (median over adjacent "
          f"windows), {ours.best / best_rate.best:.3f} best windows; target >= 0.95")
    same = next((v for v in ready if v.precision == prec
                 and v.channels_last == s["channels_last"] and not v.compiled), None)
    if same is not None and same is not best:
        print(f"                    {ours.best / same.rate().best:.3f} of the bare step in its "
              f"own settings ({same.label.strip()}: {same.rate().best:.0f} img/s), best windows")
    if plain is not None:
        print(f"plain loop        : {plain.best:.0f} img/s; cnnlab / plain = "
              f"{ours.best / plain.best:.2f}x best windows ({ours.median / plain.median:.2f}x "
              f"median windows); accuracy cnnlab - plain = "
              f"{100 * (s['test_acc'] - plain_acc):+.2f} points (one seed)")
    print(f"GEMM fraction     : cnnlab {of_peak(ours.best, prec)}")
    print(f"                    bare   {of_peak(best_rate.best, best.precision)}")
    if plain is not None:
        print(f"                    plain  {of_peak(plain.best, 'fp32')}")
    print("                    (training FLOPs = 3 x count_flops' forward FLOPs per image)")
    if max(r * train_flops / 1e9 / peak[q] for r, q in
           ((ours.best, prec), (best_rate.best, best.precision))) > 1:
        print("warning           : a fraction above 1 means the GEMM peak was measured while "
              "other work loaded the machine; rerun it quiet, or with --threads 1 --clock cpu")


if __name__ == "__main__":
    main()
