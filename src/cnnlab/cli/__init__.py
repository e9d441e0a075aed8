"""The ``cnnlab`` command line: the only place that reads argv; thin over the Python API.

Each command lives in a module of this package exposing ``register(subparsers)``, which
adds its parser and sets ``func(args) -> int`` as the handler.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from cnnlab import __version__
from cnnlab.errors import CnnlabError, one_line_warning

COMMAND_MODULES = ("models", "data", "train", "check", "sweep", "report", "augment", "hub",
                   "speedrun", "recipes",
                   "config", "eval")
# commands registered by a module whose name differs from the command
ALIASES = {"export": "hub", "predict": "hub"}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``argv`` naming a command, only that command's module is
    imported (a command that needs no torch starts fast)."""
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Build, train and compare convolutional networks for image classification.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    first = next((a for a in argv or [] if not a.startswith("-")), None)
    chosen = ALIASES.get(first, first)
    for name in [chosen] if chosen in COMMAND_MODULES else COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cnnlab.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"cnnlab.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.argv = list(argv)  # the command as typed, for "resume with: ..." messages
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    shown_before = warnings.showwarning
    warnings.showwarning = one_line_warning
    try:
        return int(args.func(args) or 0)
    except CnnlabError as e:
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        warnings.showwarning = shown_before


if __name__ == "__main__":
    sys.exit(main())
