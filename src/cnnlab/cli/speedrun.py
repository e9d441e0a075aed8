"""``cnnlab speedrun [--recipe NAME] [--target ACC] [--data SPEC] [--device D] [--out DIR]``."""

from __future__ import annotations

import argparse

from cnnlab.cli.options import add_train_options


def register(sub) -> None:
    p = sub.add_parser(
        "speedrun", help="train a CIFAR-10 speed-record recipe and time it",
        description="Train a record recipe (a set of config values: --recipe) through the "
        "ordinary trainer; print the final accuracy with and without test-time augmentation, "
        "the wall time from set-up to the last evaluation and, with --curve, the time to "
        "--target. Writes a run folder like `cnnlab train`.")
    p.add_argument("--target", type=float, default=0.94,
                   help="test accuracy whose first epoch is reported, in (0, 1] (0.94)")
    p.add_argument("--curve", action="store_true",
                   help="evaluate the test split after every epoch (costs time; needed "
                        "for the time to target)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="train on a seeded, class-stratified subset of N training images "
                        "(data.train_size)")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/speedrun-TIME)")
    add_train_options(p)  # --recipe among them (default here: fast)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import datetime as _dt
    from pathlib import Path

    from cnnlab.cli.options import option_overrides
    from cnnlab.errors import ConfigError
    from cnnlab.experiments.speedrun import DEFAULT_RECIPE, speedrun

    if not 0 < args.target <= 1:
        raise ConfigError(f"--target must be an accuracy in (0, 1], got {args.target}")
    out = Path(args.out) if args.out else Path("runs") / (
        "speedrun-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    data = args.data or "cifar10"
    r = speedrun(args.recipe or DEFAULT_RECIPE, data, out, target=args.target, curve=args.curve,
                 limit=args.limit, overrides=option_overrides(args, skip=("data",)))
    s = r.summary
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    if s["time_to_target"] is not None:
        reach = f"reached {pct(s['target'])} at epoch {s['target_epoch']} after " \
                f"{s['time_to_target']:.1f}s"
    elif args.curve:
        reach = f"did not reach {pct(s['target'])}"
    else:
        reach = "time to target not measured (add --curve)"
    print(f"{s['status']}: test acc {pct(s['test_acc'])} with {s['tta']} TTA, "
          f"{pct(s['test_acc_no_tta'])} without; {s['epochs_completed']} epochs, "
          f"{s['total_wall_time']:.1f}s wall (set-up and evaluation included); {reach}")
    print(f"run folder: {out}")
    return 0 if s["trainer_status"] != "diverged" else 3
