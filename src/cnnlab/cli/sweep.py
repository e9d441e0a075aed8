"""``cnnlab sweep PRESET_OR_TOML [--data SPEC] [--set k=v] [--reps N] [--out DIR]
[--backend local|ray [--address auto|HOST:PORT]]``."""

from __future__ import annotations

import argparse
import shlex
import sys

from cnnlab.cli.options import add_train_options, option_overrides


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a grid of configurations with repetitions",
        description="Run every cell of a sweep grid x repetitions, store results in SQLite "
        "(results.sqlite) and write a report (with the figure and verdict of the preset's "
        "phenomenon analysis, if it names one). Rerunning skips finished runs and resumes "
        "half-finished ones. --data digits selects a preset's offline digits form where it "
        "has one (the sweep is then named NAME-digits).")
    p.add_argument("spec", nargs="?", help="preset name (see --list) or a sweep .toml file")
    p.add_argument("--list", action="store_true", help="list the shipped presets")
    add_train_options(p)  # --data, --skip-bad, --resize, --set, --epochs, --seed, ...
    p.add_argument("--reps", type=int, help="repetitions per cell")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default sweeps/NAME)")
    p.add_argument("--workers", type=int, help="runs at once (default: chosen for the machine)")
    p.add_argument("--threads", type=int, help="torch threads per worker (on Ray: the CPUs "
                   "each run asks for; default 1)")
    p.add_argument("--backend", choices=("local", "ray"),
                   help="where the runs go: local (a process pool here; default) or ray (a "
                   "Ray cluster; needs pip install \"cnnlab[ray]\"); overrides the sweep "
                   "file's backend")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="the Ray cluster: auto (the one started on this machine) or the "
                   "head's HOST:PORT (default: RAY_ADDRESS, else a Ray started for this sweep)")
    p.add_argument("--gpus-per-run", type=float, metavar="G",
                   help="on Ray: GPUs each run asks for (0.25: four runs share a GPU; "
                   "default 1 for --device cuda)")
    p.add_argument("--stack-reps", choices=("auto", "on", "off"), default="auto",
                   help="train each cell's repetitions as one stacked (vmapped) model; same "
                   "rows and run folders (auto: only on devices measured faster; default)")
    p.add_argument("--force", action="store_true", help="discard stored results and redo")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.api import sweep
    from cnnlab.errors import ConfigError
    from cnnlab.experiments import list_presets
    from cnnlab.utils.table import text_table

    if args.list:
        print(text_table(["PRESET", "DESCRIPTION"], list(list_presets().items())))
        return 0
    if not args.spec:
        raise ConfigError("name a preset or a sweep .toml file (see `cnnlab sweep --list`)")
    # --seed is the sweep's base seed (each run's seed derives from it), not train.seed
    overrides = option_overrides(args, skip=("data", "seed"))
    try:
        result = sweep(args.spec, args.out, data=args.data, overrides=overrides,
                       reps=args.reps, seed=args.seed, workers=args.workers,
                       threads=args.threads, force=args.force, report=not args.no_report,
                       stack_reps=args.stack_reps, recipe=args.recipe, backend=args.backend,
                       address=args.address, gpus_per_run=args.gpus_per_run,
                       log=(lambda *a: None) if args.quiet else print)
    except KeyboardInterrupt:
        again = shlex.join(["cnnlab", *(a for a in args.argv if a != "--force")])
        print(f"cnnlab: interrupted; finished runs are kept; resume with: {again}",
              file=sys.stderr)
        return 130
    if result.table:
        print()
        print(result.table)
        print()
        if result.verdict:
            print(f"verdict: {result.verdict}")
            print()
        for kind, path in result.report.items():
            print(f"{kind:>14}: {path}")
    print(f"sweep folder: {result.folder} ({result.ran} run(s) now, {result.skipped} skipped, "
          f"{result.wall_time:.0f}s)")
    if result.failed:
        print(f"cnnlab: {result.failed} run(s) failed or diverged; see the report")
        return 1
    return 0
