"""Options that mean the same on every command that has them, defined once.

A command that loads a dataset takes ``--data``, ``--skip-bad`` and ``--resize``; one that
trains takes ``--seed``, ``--device``, ``--epochs`` and ``--set``; one that shows progress
takes ``--quiet``. Each maps to one config key, listed in :data:`CONFIG_KEYS`.
"""

from __future__ import annotations

import argparse

# option dest -> the config key it sets
CONFIG_KEYS = {
    "data": "data.spec",
    "skip_bad": "data.skip_bad",
    "resize": "data.resize",
    "epochs": "train.epochs",
    "seed": "train.seed",
    "device": "train.device",
    "quiet": "train.quiet",
}


def add_data_options(p: argparse.ArgumentParser, required: bool = False) -> None:
    """``--data SPEC``, ``--skip-bad``, ``--resize N`` (data.spec / skip_bad / resize)."""
    p.add_argument("--data", metavar="SPEC", required=required,
                   help="dataset spec: digits, cifar10, folder:PATH, ... (data.spec)")
    p.add_argument("--skip-bad", action="store_true", default=None,
                   help="skip unreadable image files with a warning instead of failing "
                        "(data.skip_bad)")
    p.add_argument("--resize", type=int, metavar="N",
                   help="resize every image to NxN, e.g. for folders of mixed sizes "
                        "(data.resize)")


def add_quiet_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", default=None,
                   help="no progress bars or per-step output (train.quiet)")


def add_train_options(p: argparse.ArgumentParser, epochs: bool = True) -> None:
    """``--set``, ``--epochs`` (unless ``epochs=False``: a command that trains no full
    run), ``--seed``, ``--device``, ``--quiet`` and the data options."""
    add_data_options(p)
    p.add_argument("--recipe", metavar="NAME|TOML",
                   help="start from a recipe: a named set of config values (see `cnnlab "
                        "recipes`) or a recipe .toml file; the config file, --set and the "
                        "options win over it")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override a config key, e.g. --set optim.lr=3e-3 (repeatable)")
    if epochs:
        p.add_argument("--epochs", type=int, help="epochs per run (train.epochs)")
    p.add_argument("--seed", type=int, help="random seed (train.seed)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (train.device)")
    add_quiet_option(p)


def option_overrides(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> list[str]:
    """``--set`` values, then ``key=value`` for every option of :data:`CONFIG_KEYS` given
    on the command line (options win over ``--set``, as they come later)."""
    out = list(getattr(args, "overrides", []))
    for dest, key in CONFIG_KEYS.items():
        value = getattr(args, dest, None)
        if value is None or dest in skip:
            continue
        if isinstance(value, bool):
            out.append(f"{key}={'true' if value else 'false'}")
        else:
            out.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    return out
