"""``cnnlab check MODEL --data SPEC``: the recipe checks to run before a long training run
(:mod:`cnnlab.experiments.checks`), one PASS / NOTE / FAIL line each."""

from __future__ import annotations

import argparse
import json
import re
import textwrap
import time
from pathlib import Path

from cnnlab.cli.options import add_train_options, option_overrides
from cnnlab.cli.train import data_slug

EPILOG = """\
checks (Karpathy, "A recipe for training neural networks", 2019):
  init-loss         loss at initialization within 0.5 ln C of ln C (C classes); also the
                    loss with the last layer's bias set to the log class prior
  logits            the outputs are logits, not probabilities (no softmax before the loss)
  input-baseline    real inputs beat zeroed inputs after --steps steps (labels match inputs)
  overfit-batch     16 un-augmented images memorized within --overfit-steps steps
                    (100% accuracy, loss below 0.1 nats)
  batch-gradient    one sample's loss has no gradient on the other samples' inputs
                    (batch norm in training mode mixes them: a NOTE, then checked in eval)
  eval-determinism  the evaluation gives the same logits twice and in other batches, and
                    its loader yields the stored images un-augmented
  batch-view        OUT/batch.png: the first training batch as the model sees it

exit status: 0 when every check passes (NOTE counts as a pass), 1 when one fails,
2 for bad input.

examples:
  cnnlab check vgg --data digits
  cnnlab check resnet20 --data folder:cifar10-train.tar.gz --set data.augment=flip-crop
  cnnlab check vgg --config run.toml --only overfit-batch,logits --json"""


def register(sub) -> None:
    p = sub.add_parser(
        "check", help="sanity checks of a model and its data before a long run",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description=textwrap.fill(
            "Build the model and data exactly as `cnnlab train` would (same config, data "
            "preparation, trainer, loaders and augmentation), then run quick checks that "
            "catch common bugs: softmax before the loss, labels shuffled against the "
            "inputs, a missing model.eval(), augmentation at evaluation, a reshape that "
            "mixes samples. Prints one PASS / NOTE / FAIL line per check and writes "
            "OUT/checks.json and OUT/batch.png.", 78))
    p.add_argument("model", nargs="?", help="registered model name (see `cnnlab models`)")
    p.add_argument("--config", metavar="TOML", help="run configuration file")
    add_train_options(p, epochs=False)  # the checks train for steps, not epochs
    p.add_argument("--out", metavar="DIR",
                   help="where checks.json and batch.png go (default runs/check-MODEL-DATA)")
    p.add_argument("--steps", type=int, default=100, metavar="N",
                   help="training steps of the input-baseline check (default 100)")
    p.add_argument("--overfit-steps", type=int, default=300, metavar="N",
                   help="step budget of the overfit-batch check (default 300)")
    p.add_argument("--only", metavar="NAMES",
                   help="comma-separated checks to run (default: all)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def default_out(model: str, spec: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)
    return Path("runs") / f"check-{name}-{data_slug(spec)}"


def format_line(r) -> str:
    """``PASS  init-loss         loss 2.306 vs ln(10) = 2.303, ...  [note: ...]``."""
    note = f"  [{r.note}]" if r.note else ""
    return f"{r.status:<4}  {r.name:<16}  {r.message}{note}"


def run(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config
    from cnnlab.errors import ConfigError
    from cnnlab.experiments.checks import CHECKS_FILE, run_checks

    if not args.model and not args.config:
        raise ConfigError("name a model (e.g. `cnnlab check vgg --data digits`) or a --config")
    overrides = option_overrides(args)
    if args.model:
        overrides.insert(0, f"model.name={args.model!r}")
    cfg = load_config(args.config, overrides, recipe=args.recipe)
    out = Path(args.out) if args.out else default_out(cfg.model.name, cfg.data.spec)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    header = [] if cfg.train.quiet else [f"checks of {cfg.model.name} on {cfg.data.spec} "
                                         f"(seed {cfg.train.seed}), writing to {out}"]

    def show(result) -> None:  # after the set-up, which refuses bad input first
        while header:
            print(header.pop())
        print(format_line(result))

    t0 = time.perf_counter()
    results = run_checks(cfg, out, steps=args.steps, overfit_steps=args.overfit_steps,
                         only=only, log=None if args.json else show)
    failed = [r.name for r in results if not r.passed]
    if args.json:
        print(json.dumps({"passed": not failed, "checks": [r.to_dict() for r in results],
                          "out": str(out)}, indent=2, default=str))
        return 1 if failed else 0
    notes = sum(r.status == "NOTE" for r in results)
    print(f"{len(results) - len(failed)} of {len(results)} checks passed"
          + (f" ({notes} with a note)" if notes else "")
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + f" in {time.perf_counter() - t0:.1f}s; wrote {out / CHECKS_FILE}")
    return 1 if failed else 0
