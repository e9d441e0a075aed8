"""Stacked repetitions vs separate runs: R repetitions of one sweep cell trained one by one
(``train_run`` each) and as one stacked job (``train_stacked``), side by side in one process
on the given device; prints the wall time of each and the speed-up of stacking.

    python benchmarks/stacked.py --device cuda --data cifar10 --limit 10000 --reps 3
    python benchmarks/stacked.py --device cpu --blocks 2 --layers 1 --width 16

``cnnlab sweep --stack-reps auto`` stacks only on device types recorded in
``cnnlab.experiments.stacked.STACKING_PAYS`` as faster; measure there with this script
(every cell of the sweep if they differ much in size) before changing that table.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default="digits")
    p.add_argument("--limit", type=int, default=0, help="training images (0 = all)")
    p.add_argument("--model", default="vgg")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--norm", default="none")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rounds", type=int, default=2, help="alternating timed rounds of each")
    args = p.parse_args()

    import torch

    from cnnlab.config import RunConfig
    from cnnlab.experiments.run import train_run
    from cnnlab.experiments.stacked import train_stacked

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = RunConfig().set(**{
        "data.spec": args.data, "data.limit": args.limit, "data.batch_size": args.batch_size,
        "model.name": args.model, "model.blocks": args.blocks, "model.layers": args.layers,
        "model.width": args.width, "model.norm": args.norm, "train.epochs": args.epochs,
        "train.device": args.device, "train.precision": args.precision,
        "train.quiet": True, "train.checkpoint": False})
    cfgs = [cfg.set(**{"train.seed": s}) for s in range(args.reps)]

    def sync():
        if torch.cuda.is_available() and args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def separate() -> tuple[float, list]:
        sync()
        t0 = time.perf_counter()
        results = [train_run(c) for c in cfgs]
        sync()
        return time.perf_counter() - t0, results

    def stacked() -> tuple[float, list]:
        sync()
        t0 = time.perf_counter()
        results = train_stacked(cfgs)
        sync()
        return time.perf_counter() - t0, results

    train_run(cfgs[0].set(**{"train.epochs": 1}))  # warm-up: data loaded, kernels chosen
    train_stacked(cfgs[:2])
    times = {"separate": [], "stacked": []}
    for _ in range(args.rounds):  # alternate, so drift on a shared machine hits both
        for name, fn in (("separate", separate), ("stacked", stacked)):
            t, results = fn()
            times[name].append(t)
    images = sum(r.summary["steps"] for r in results) * args.batch_size  # per side
    sep, stk = min(times["separate"]), min(times["stacked"])
    print(f"device {args.device}, {args.model} {args.blocks}x{args.layers} width {args.width} "
          f"norm {args.norm}, {args.reps} reps x {args.epochs} epoch(s) x "
          f"{images // args.reps} images, batch {args.batch_size}, "
          f"precision {results[0].summary['precision']}, threads {torch.get_num_threads()}")
    print(f"separate runs : {sep:8.2f} s  ({images / sep:9.0f} training images/s)  "
          f"rounds {', '.join(f'{t:.2f}' for t in times['separate'])}")
    print(f"stacked job   : {stk:8.2f} s  ({images / stk:9.0f} training images/s)  "
          f"rounds {', '.join(f'{t:.2f}' for t in times['stacked'])}")
    print(f"stacked speed-up: {sep / stk:.2f}x  (> 1: stacking pays on this device)")


if __name__ == "__main__":
    main()
