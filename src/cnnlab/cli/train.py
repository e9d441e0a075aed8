"""``cnnlab train MODEL --data SPEC [--config run.toml] [--set key=value ...] [--out DIR]``.

``--nproc N`` trains one model on N processes with torch DDP: the command launches itself
N times through torch's elastic launcher (torchrun's semantics), each process a rank of
one process group. A process that torchrun started (``torchrun --nproc-per-node N -m
cnnlab train ...``) is such a rank too.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
from pathlib import Path

from cnnlab.cli.options import add_train_options, option_overrides

LAUNCH_OPTIONS = ("nproc", "nnodes", "node_rank", "master_addr", "master_port")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model and write a run folder",
                       description="Train a registered model on a dataset. Writes config.json, "
                       "run.toml, metrics.csv, summary.json and checkpoints to the run folder.")
    p.add_argument("model", nargs="?", help="registered model name (see `cnnlab models`)")
    p.add_argument("--config", metavar="TOML", help="run configuration file")
    add_train_options(p)
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/MODEL-DATA-TIME)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    ddp = p.add_argument_group(
        "data-parallel training (torch DDP; gloo on CPU, NCCL on GPU)",
        "data.batch_size stays the global batch: each of the processes takes its share. "
        "On several machines run the same command on each, with its --node-rank.")
    ddp.add_argument("--nproc", metavar="N", help="processes on this machine (one per GPU)")
    ddp.add_argument("--nnodes", metavar="M", help="machines taking part (default 1)")
    ddp.add_argument("--node-rank", metavar="R", help="this machine's rank, 0..M-1 (default 0)")
    ddp.add_argument("--master-addr", metavar="HOST",
                     help="address of the machine of rank 0 (default 127.0.0.1)")
    ddp.add_argument("--master-port", metavar="PORT",
                     help="a free port there (default 29500; one machine: any free port)")
    p.set_defaults(func=run)


def data_slug(spec: str) -> str:
    """A folder-name word for a dataset spec: ``folder:~/pets.v2`` -> ``pets``."""
    data = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec.split(":", 1)[-1]).name or spec)
    return data.split(".")[0]


def default_run_dir(model: str, spec: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{data_slug(spec)}-{stamp}"


def resolve_run(args: argparse.Namespace):
    """The config and run folder the command line asks for: ``(cfg, out)``."""
    from cnnlab.config import apply_overrides, load_config, recipe_table
    from cnnlab.errors import ConfigError
    from cnnlab.train.run import saved_config

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
    return cfg, out


def run(args: argparse.Namespace) -> int:
    from cnnlab.train import distributed

    given = [o for o in LAUNCH_OPTIONS if getattr(args, o, None) is not None]
    if distributed.launched():  # one rank of a job torchrun (or --nproc) started
        if given:
            from cnnlab.errors import ConfigError

            raise ConfigError(f"--{given[0].replace('_', '-')} cannot be used in a process "
                              "torchrun started: give the launcher's options to torchrun")
        return run_rank(args)
    if given:
        return run_launched(args, launch_spec(args))
    cfg, out = resolve_run(args)
    log = (lambda *a: None) if cfg.train.quiet else print
    log(f"run folder: {out}")
    return train_and_report(cfg, out, args)


def train_and_report(cfg, out: Path, args) -> int:
    """Train the run in this process and print its result line."""
    from cnnlab.experiments.run import train_run
    from cnnlab.train.run import checkpoint_note

    try:
        result = train_run(cfg, out, resume=bool(args.resume))
    except KeyboardInterrupt:
        kept = checkpoint_note(out) if out.is_dir() else None
        print("cnnlab: interrupted; " + (f"kept {kept}; resume with: cnnlab train --resume {out}"
                                         if kept else "no checkpoint was written yet"),
              file=sys.stderr)
        return 130
    return report(result, out)


def report(result, out: Path) -> int:
    """Print a finished run's result line; the exit code (3: diverged)."""
    from cnnlab.status import DIVERGED

    s = result.summary
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"{s['status']}: test acc {fmt(s['test_acc'])}, best val acc {fmt(s['best_val_acc'])}"
          f" (epoch {s['best_epoch']}), {s['epochs_completed']} epochs in {s['wall_time']:.1f}s, "
          f"{s['images_per_s'] or 0:.0f} img/s on {s['device']} ({s['precision']})"
          + (f", {s['world_size']} processes" if s["world_size"] > 1 else ""))
    print(f"run folder: {out}")
    if result.status == DIVERGED:
        print(f"cnnlab: error: {result.message}", file=sys.stderr)
        return 3
    return 0


# -- data-parallel: the launcher and its ranks ---------------------------------------------

def _whole(args, name: str, low: int, what: str) -> int | None:
    text = getattr(args, name)
    if text is None:
        return None
    from cnnlab.errors import ConfigError

    try:
        value = int(str(text).strip())
    except ValueError:
        value = None
    if value is None or value < low:
        raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= {low} "
                          f"({what}), got {text!r}")
    return value


def launch_spec(args: argparse.Namespace):
    """The ``--nproc ...`` options as a :class:`cnnlab.train.distributed.Launch`."""
    from cnnlab.errors import ConfigError
    from cnnlab.train.distributed import Launch

    nproc = _whole(args, "nproc", 1, "processes on this machine")
    if nproc is None:
        raise ConfigError("--nnodes, --node-rank, --master-addr and --master-port go with "
                          "--nproc N (processes on this machine)")
    nnodes = _whole(args, "nnodes", 1, "machines") or 1
    node_rank = _whole(args, "node_rank", 0, "this machine's rank") or 0
    port = _whole(args, "master_port", 1, "a TCP port")
    if node_rank >= nnodes:
        raise ConfigError(f"--node-rank must lie in 0..{nnodes - 1} for --nnodes {nnodes}, "
                          f"got {node_rank}")
    if port is not None and port > 65535:
        raise ConfigError(f"--master-port must be a TCP port, 1..65535, got {port}")
    if nnodes > 1 and not args.master_addr:
        raise ConfigError(f"--nnodes {nnodes} needs --master-addr: the address of the machine "
                          "of --node-rank 0, the same on every machine")
    return Launch(nproc, nnodes, node_rank, args.master_addr, port)


def _flags(spec) -> str:
    """The launcher options that start this run again, for "resume with" lines."""
    flags = f" --nproc {spec.nproc}"
    if spec.nnodes > 1:
        flags += (f" --nnodes {spec.nnodes} --node-rank {spec.node_rank} --master-addr "
                  f"{spec.master_addr}" + (f" --master-port {spec.master_port}"
                                           if spec.master_port else ""))
    return flags


def _rank_argv(args: argparse.Namespace, out: Path) -> list[str]:
    """The command line of each rank: this one without the launcher options, every option
    as the ``--set`` it stands for, and the run folder made explicit."""
    argv = [args.model] if args.model else []
    if args.config:
        argv += ["--config", args.config]
    if args.recipe:
        argv += ["--recipe", args.recipe]
    for item in option_overrides(args):
        argv += ["--set", item]
    return argv + (["--resume", str(out)] if args.resume else ["--out", str(out)])


def _check_parallel(cfg, out: Path, args, spec) -> None:
    """Refuse, before any process starts, what the ranks would refuse."""
    import json

    from cnnlab.train import distributed
    from cnnlab.train.hardware import resolve_device

    if args.resume and spec.node_rank == 0:
        info = json.loads((out / "config.json").read_text())
        saved = info.get("parallel", {}).get("world_size", 1)
        distributed.check_resume_world(out, saved, spec.world_size)
    distributed.check_config(cfg, spec.world_size)
    if cfg.train.sync_bn and spec.world_size > 1:
        distributed.check_sync_bn(resolve_device(cfg.train.device))


def run_launched(args: argparse.Namespace, spec) -> int:
    """``--nproc N``: start the ranks of this machine and wait for them."""
    from cnnlab.train import distributed
    from cnnlab.train.run import checkpoint_note

    cfg, out = resolve_run(args)
    _check_parallel(cfg, out, args, spec)
    if not cfg.train.quiet:
        print(f"launching {spec.nproc} process(es) on this machine, {spec.world_size} in all"
              + (f" (machine {spec.node_rank} of {spec.nnodes})" if spec.nnodes > 1 else ""))
    outcome = distributed.launch(["-m", "cnnlab", "train", *_rank_argv(args, out)], spec)
    if outcome.exit_code in (0, 2, 3):  # done, or a rank said what was wrong
        return outcome.exit_code
    kept = checkpoint_note(out) if spec.node_rank == 0 and out.is_dir() else None
    then = (f"kept {kept}; resume with: cnnlab train --resume {out}{_flags(spec)}" if kept
            else "no checkpoint was written yet")
    if outcome.exit_code == 130:
        print(f"cnnlab: interrupted; {then}", file=sys.stderr)
        return 130
    print(f"cnnlab: error: {outcome.message}; {then}", file=sys.stderr)
    return 1


def run_rank(args: argparse.Namespace) -> int:
    """One rank: join the group, take rank 0's config and run folder, train its part."""
    from cnnlab.errors import CnnlabError
    from cnnlab.experiments.run import train_run
    from cnnlab.status import DIVERGED
    from cnnlab.train import distributed

    with distributed.process_group() as world:
        try:
            cfg, out = distributed.share_outcome(lambda: resolve_run(args))
            if world.is_main and not cfg.train.quiet:
                print(f"run folder: {out}")
            result = train_run(cfg, out, resume=bool(args.resume))
            # every rank done before any ends: a rank still inside a collective when its
            # partner's connections close dies in gloo's C++ (SIGABRT); then no teardown
            distributed.barrier()
            code = report(result, out) if world.is_main else \
                3 if result.status == DIVERGED else 0
            distributed.exit_now(code)
        except KeyboardInterrupt:
            return 130  # the launcher says how to resume
        except distributed.MainRankError:
            return 2  # rank 0 reported it
        except CnnlabError as e:
            where = "" if world.is_main else f"rank {world.rank}: "
            print(f"cnnlab: error: {where}{e}", file=sys.stderr)
            return 2
        except Exception as e:
            if distributed.lost_partner(e):
                return 1  # a partner process is gone: the launcher reports the one that failed
            raise
