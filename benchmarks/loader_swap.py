"""Which half of cnnlab holds the one-epoch accuracy gap of benchmarks/accuracy_gap.py: the
plain loop's training step (fp32, NCHW, torch's Adam) fed with cnnlab's loader batches, and
the same step fed by the plain loop's DataLoader (per-sample crop + flip), from the same
initial weights per seed; both evaluated by the plain loop's evaluation.

    python benchmarks/loader_swap.py --seeds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from accuracy_gap import plain_accuracy, plain_steps  # noqa: E402
from throughput import SHARED, CropFlipDataset, cnnlab_config, load_data, model_factory  # noqa: E402

from cnnlab.train.run import build_loaders  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=SHARED)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    ds, source = load_data(args.data, 0)
    mean, std = ds.train.mean_std()
    device = torch.device("cpu")
    print(f"data: {source}; {torch.get_num_threads()} threads; plain step, fp32, 1 epoch")
    for seed in range(args.seeds):
        make = model_factory(device, seed)
        cfg = cnnlab_config(device, 128, ["train.precision=fp32", "train.channels_last='false'"],
                            seed=seed)
        loader = build_loaders(ds, cfg, device, False)[0].train
        loader.set_epoch(0)
        t0 = time.perf_counter()
        model = make()
        # cnnlab's batches are contiguous NCHW here (channels_last off), as the DataLoader's
        plain_steps(model, iter(loader), device, 1e-3)
        a = plain_accuracy(model, ds, mean, std, device)
        torch.manual_seed(seed)  # the DataLoader's order and the per-sample augmentation
        plain = torch.utils.data.DataLoader(CropFlipDataset(ds.train.images, ds.train.labels,
                                                            mean, std),
                                            batch_size=128, shuffle=True, drop_last=True)
        model = make()
        plain_steps(model, plain, device, 1e-3)
        b = plain_accuracy(model, ds, mean, std, device)
        loader.set_epoch(0)
        xc, xp = next(iter(loader))[0], next(iter(plain))[0]
        print(f"seed {seed}: cnnlab batches {100 * a:.2f} %, DataLoader batches {100 * b:.2f} % "
              f"(difference {100 * (a - b):+.2f}); first batch std {xc.std():.3f} vs "
              f"{xp.std():.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
