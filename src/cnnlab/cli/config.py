"""``cnnlab config [KEY|PATTERN]``: every configuration key with its default, allowed values
and help line.

The table is derived from :mod:`cnnlab.config` (the dataclass fields, their comments and
``CHOICES``), so it never falls behind the code.
"""

from __future__ import annotations

import argparse
import fnmatch
import json

from cnnlab.config import key_table, known_keys
from cnnlab.errors import ConfigError, did_you_mean
from cnnlab.utils.table import text_table

EPILOG = """\
Set a key with --set KEY=VALUE on train / sweep, or in a TOML file ([optim] lr = 3e-3).
model.* keys other than model.name are passed to the model builder: `cnnlab models NAME`
lists a model's arguments.

examples:
  cnnlab config                 every key
  cnnlab config optim.lr        one key
  cnnlab config 'train.*'       a wildcard pattern
  cnnlab config decay           a part of a key
  cnnlab config --json"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``config`` command."""
    p = subparsers.add_parser(
        "config", help="list the configuration keys with defaults and allowed values",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="List the configuration keys (data.*, model.*, optim.*, train.*) with "
                    "their default, allowed values and a line of help.")
    p.add_argument("pattern", nargs="?", default="*", metavar="KEY",
                   help="a key, a shell-style wildcard or a part of a key (default: all)")
    p.add_argument("--json", action="store_true", help="print the keys as JSON")
    p.set_defaults(func=run)


def select(pattern: str) -> list[dict]:
    """Rows for an exact key, a wildcard pattern or a part of a key; no match is a
    ConfigError naming the closest keys."""
    rows = key_table()
    if any(r["key"] == pattern for r in rows):
        return [r for r in rows if r["key"] == pattern]
    if any(ch in pattern for ch in "*?["):
        chosen = [r for r in rows if fnmatch.fnmatchcase(r["key"], pattern)]
    else:
        chosen = [r for r in rows if pattern.lower() in r["key"].lower()]
    if not chosen:
        raise ConfigError(f"no config key matches '{pattern}'"
                          f"{did_you_mean(pattern, known_keys(), n=3)}")
    return chosen


def run(args: argparse.Namespace) -> int:
    rows = select(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(text_table(["KEY", "DEFAULT", "ALLOWED", "HELP"],
                     [[r["key"], json.dumps(r["default"]), _allowed(r["allowed"]), r["help"]]
                      for r in rows]))
    return 0


def _allowed(allowed: list[str] | str) -> str:
    return "|".join(allowed) if isinstance(allowed, list) else allowed
