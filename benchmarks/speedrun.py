"""cnnlab speedrun over seeds, beside the airbench94 CPU reference on the same data.

    python benchmarks/speedrun.py [--data SPEC] [--recipe fast] [--seeds 3] [--first-seed 0]
                                  [--limit N] [--epochs E] [--ref-epochs 9.9] [--no-reference]
                                  [--concurrent] [--set KEY=VALUE ...]

Loads the dataset once (CIFAR-10 training archive by default, with cnnlab's seeded 40,000 /
10,000 train / held-out split: test_fraction 0.2, split_seed 0), runs
``cnnlab.experiments.speedrun.speedrun`` for seeds 0..N-1 (F..F+N-1 with ``--first-seed``)
and prints each run's held-out accuracy with and without TTA and its wall time (set-up and
evaluation included), then mean +- std. When ``../shared/bench/airbench94_cpu.py`` exists
(relative to the repository; skipped cleanly when it does not), the same train / held-out
images are written as .npz files (x uint8 N x 32 x 32 x 3, y int64), the split the speed
runs see is checked to be the identical one, and the reference runs for the same seeds in
the same sitting (a subprocess per seed, interleaved with cnnlab's runs; with
``--concurrent`` both at once, one thread each, so that the load of a shared machine hits
both alike); its final JSON line is parsed. The reference's training images are written in a
seeded random order (the split is stored sorted by class and the reference fits its
whitening to its first 5,000 images). Last lines: the ratio of mean wall times and a
computed verdict against the target (at least the reference's mean TTA accuracy in at most
0.7x its mean wall time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import cnnlab
from cnnlab.experiments.speedrun import recipe_config, speedrun
from cnnlab.train.run import prepare_data

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / ".." / "shared" / "bench" / "airbench94_cpu.py"
DEFAULT_DATA = f"folder:{ROOT / '..' / 'shared' / 'data' / 'cifar10-train.tar.gz'}"
TIME_RATIO_TARGET = 0.7


def digest(images, labels) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images.numpy()).tobytes())
    h.update(np.ascontiguousarray(labels.numpy()).tobytes())
    return h.hexdigest()[:16]


def write_npz(folder: Path, train, test) -> tuple[Path, Path]:
    """The splits as .npz; the training images in a seeded random order (the split is
    stored sorted by class, and the reference fits its whitening to its first 5,000)."""
    order = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(0))
    paths = []
    for name, images, labels in (("train", train.images[order], train.labels[order]),
                                 ("test", test.images, test.labels)):
        path = folder / f"{name}.npz"
        np.savez(path, x=images.numpy().astype(np.uint8), y=labels.numpy().astype(np.int64))
        paths.append(path)
    return paths[0], paths[1]


def start_reference(train: Path, test: Path, seed: int, epochs: float, threads: int = 0
                    ) -> subprocess.Popen:
    cmd = [sys.executable, str(REFERENCE), str(train), str(test), "--epochs", str(epochs),
           "--seed", str(seed)]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def finish_reference(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"reference failed ({proc.returncode}): {stderr.strip()[-500:]}")
    line = [ln for ln in stdout.splitlines() if ln.strip().startswith("{")][-1]
    return json.loads(line)


def report_reference(rows: dict, seed: int, r: dict) -> None:
    rows["reference"].append((r["tta_acc"], r["acc"], r["seconds"]))
    print(f"seed {seed} reference: tta {r['tta_acc']:.4f}  plain {r['acc']:.4f}  "
          f"{r['seconds']:.1f}s ({r['epochs']} epochs, {r['threads']} threads)", flush=True)


def mean_std(values: list[float]) -> str:
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.4f} +- {s:.4f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="dataset spec (default: the archive)")
    p.add_argument("--recipe", default="fast",
                   help="cnnlab speedrun recipe, or several comma-separated (the first is "
                        "the one the verdict is about)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (3)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="start there: seeds F..F+N-1, to add seeds to an earlier sitting")
    p.add_argument("--limit", type=int, default=0,
                   help="train on a seeded, class-stratified subset of N images (0 = all)")
    p.add_argument("--epochs", type=int, help="cnnlab epochs (default: the recipe's)")
    p.add_argument("--ref-epochs", type=float, default=9.9, help="reference epochs (9.9)")
    p.add_argument("--set", action="append", default=[], dest="overrides",
                   help="extra config override for cnnlab, e.g. optim.muon_lr=0.2")
    p.add_argument("--no-reference", action="store_true", help="skip the reference")
    p.add_argument("--concurrent", action="store_true",
                   help="on a shared machine: run the reference and cnnlab at the same time, "
                        "one thread each, so that both see the same load (cnnlab's runs, one "
                        "recipe only, start with the reference's)")
    args = p.parse_args()

    over = list(args.overrides) + [f"data.spec={args.data!r}"]
    if args.limit:
        over.append(f"data.train_size={args.limit}")
    if args.epochs:
        over.append(f"train.epochs={args.epochs}")
    recipes = args.recipe.split(",")
    cfg = recipe_config(recipes[0], over + ["train.quiet=true"])
    ds = prepare_data(cfg)  # the split speedrun trains and evaluates on (cached)
    print(f"data: {args.data}: {len(ds.train)} train / {len(ds.test)} held-out images; "
          f"recipe {args.recipe}, {cfg.train.epochs} epochs; torch threads "
          f"{torch.get_num_threads()}")
    with_ref = REFERENCE.is_file() and not args.no_reference
    if not with_ref:
        why = "--no-reference" if args.no_reference else f"not found: {REFERENCE}"
        print(f"reference: skipped ({why})")
    tmp = tempfile.TemporaryDirectory(prefix="speedrun-bench-")
    if with_ref:
        # the split as cnnlab.load_dataset gives it: the same held-out images, and (without
        # --limit) the same training images as the speed runs train on
        full = cnnlab.load_dataset(cfg.data.spec, test_fraction=0.2, split_seed=0)
        same = digest(full.test.images, full.test.labels) == \
            digest(ds.test.images, ds.test.labels)
        if not args.limit:
            same = same and digest(full.train.images, full.train.labels) == \
                digest(ds.train.images, ds.train.labels)
        print(f"split check: load_dataset(test_fraction=0.2, split_seed=0) gives "
              f"{'the same' if same else 'a DIFFERENT'} split as the speed runs "
              f"({len(full.train)} / {len(full.test)})")
        if not same:
            return 1
        train_npz, test_npz = write_npz(Path(tmp.name), ds.train, ds.test)

    rows = {**{r: [] for r in recipes}, "reference": []}
    threads = ["train.threads=1"] if args.concurrent else []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        proc = None
        if with_ref:
            proc = start_reference(train_npz, test_npz, seed, args.ref_epochs,
                                   threads=1 if args.concurrent else 0)
            if not args.concurrent:  # one after the other: wait for it now
                report_reference(rows, seed, finish_reference(proc))
                proc = None
        for recipe in recipes:
            s = speedrun(recipe, seed=seed, overrides=over + threads + ["train.quiet=true"],
                         progress=False).summary
            rows[recipe].append((s["test_acc"], s["test_acc_no_tta"], s["total_wall_time"]))
            print(f"seed {seed} cnnlab {recipe}: tta {s['test_acc']:.4f}  plain "
                  f"{s['test_acc_no_tta']:.4f}  {s['total_wall_time']:.1f}s "
                  f"({s['epochs_completed']} epochs)", flush=True)
        if proc is not None:
            report_reference(rows, seed, finish_reference(proc))

    print()
    for name, rs in rows.items():
        if rs:
            tta, plain, secs = zip(*rs)
            print(f"{name:12s} tta acc {mean_std(tta)}  plain acc {mean_std(plain)}  "
                  f"wall {statistics.mean(secs):.1f} +- "
                  f"{statistics.stdev(secs) if len(secs) > 1 else 0:.1f}s  (n={len(rs)})")
    if with_ref:
        r_secs = statistics.mean(r[2] for r in rows["reference"])
        for recipe in recipes[1:]:
            ratio = statistics.mean(r[2] for r in rows[recipe]) / r_secs
            print(f"wall-time ratio cnnlab {recipe} / reference: {ratio:.3f}")
        c_acc = statistics.mean(r[0] for r in rows[recipes[0]])
        r_acc = statistics.mean(r[0] for r in rows["reference"])
        ratio = statistics.mean(r[2] for r in rows[recipes[0]]) / r_secs
        print(f"wall-time ratio cnnlab {recipes[0]} / reference: {ratio:.3f} "
              f"(target <= {TIME_RATIO_TARGET})")
        ok = c_acc >= r_acc and ratio <= TIME_RATIO_TARGET
        print(f"verdict: {'MET' if ok else 'NOT MET'}: cnnlab {recipes[0]} TTA acc {c_acc:.4f} vs "
              f"reference {r_acc:.4f} ({'>=' if c_acc >= r_acc else '<'}), time ratio "
              f"{ratio:.3f} ({'<=' if ratio <= TIME_RATIO_TARGET else '>'} "
              f"{TIME_RATIO_TARGET})")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
