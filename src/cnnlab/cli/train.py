"""``cnnlab train MODEL --data SPEC [--config run.toml] [--set key=value ...] [--out DIR]``."""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
from pathlib import Path

from cnnlab.cli.options import add_train_options, option_overrides


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model and write a run folder",
                       description="Train a registered model on a dataset. Writes config.json, "
                       "run.toml, metrics.csv, summary.json and checkpoints to the run folder.")
    p.add_argument("model", nargs="?", help="registered model name (see `cnnlab models`)")
    p.add_argument("--config", metavar="TOML", help="run configuration file")
    add_train_options(p)
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/MODEL-DATA-TIME)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    p.set_defaults(func=run)


def data_slug(spec: str) -> str:
    """A folder-name word for a dataset spec: ``folder:~/pets.v2`` -> ``pets``."""
    data = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec.split(":", 1)[-1]).name or spec)
    return data.split(".")[0]


def default_run_dir(model: str, spec: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{data_slug(spec)}-{stamp}"


def run(args: argparse.Namespace) -> int:
    from cnnlab.config import apply_overrides, load_config, recipe_table
    from cnnlab.errors import ConfigError
    from cnnlab.experiments.run import train_run
    from cnnlab.status import DIVERGED
    from cnnlab.train.run import checkpoint_note, saved_config

    overrides = option_overrides(args)
    if args.model:
        overrides.insert(0, f"model.name={args.model!r}")
    if args.resume:
        if args.recipe:
            raise ConfigError("--recipe cannot change a run being resumed (its config is "
                              "fixed in its folder)")
        out = Path(args.resume)
        cfg = saved_config(out)
        if args.config:
            cfg = load_config(args.config)
        cfg = apply_overrides(cfg, overrides) if overrides else cfg
    else:
        if not args.model and not args.config and not args.recipe:
            raise ConfigError("name a model (e.g. `cnnlab train vgg --data digits`), a "
                              "--config or a --recipe")
        if not args.model and not args.config and "model.name" not in recipe_table(args.recipe):
            raise ConfigError(f"recipe {args.recipe!r} names no model: give one (e.g. "
                              f"`cnnlab train resnet20 --recipe {args.recipe}`)")
        cfg = load_config(args.config, overrides, recipe=args.recipe)
        out = Path(args.out) if args.out else default_run_dir(cfg.model.name, cfg.data.spec)
        # a folder that already holds a run is refused by fit, under the folder's lock
    log = (lambda *a: None) if cfg.train.quiet else print
    log(f"run folder: {out}")
    try:
        result = train_run(cfg, out, resume=bool(args.resume))
    except KeyboardInterrupt:
        kept = checkpoint_note(out) if out.is_dir() else None
        print("cnnlab: interrupted; " + (f"kept {kept}; resume with: cnnlab train --resume {out}"
                                         if kept else "no checkpoint was written yet"),
              file=sys.stderr)
        return 130
    s = result.summary
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"{s['status']}: test acc {fmt(s['test_acc'])}, best val acc {fmt(s['best_val_acc'])}"
          f" (epoch {s['best_epoch']}), {s['epochs_completed']} epochs in {s['wall_time']:.1f}s, "
          f"{s['images_per_s'] or 0:.0f} img/s on {s['device']} ({s['precision']})")
    print(f"run folder: {out}")
    if result.status == DIVERGED:
        print(f"cnnlab: error: {result.message}", file=sys.stderr)
        return 3
    return 0
