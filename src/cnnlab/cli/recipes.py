"""``cnnlab recipes [NAME ...] [--json]``: the shipped recipes and the keys each one sets.

Derived from the recipe files (:func:`cnnlab.config.list_recipes`), never kept by hand.
"""

from __future__ import annotations

import argparse
import json

from cnnlab.config import list_recipes, recipe_table

EPILOG = """\
A recipe is a named set of config values (optimizer, schedule, loss, augmentation,
regularization). Use one with `cnnlab train MODEL --recipe NAME`, `cnnlab sweep PRESET
--recipe NAME`, or `recipe = "NAME"` at the top of a config file (in a sweep file: under
[base], or as a grid axis). Precedence, lowest first: defaults, the recipe, the config
file's keys, --set and the options.

examples:
  cnnlab recipes                every recipe with what it sets
  cnnlab recipes rsb-a3         one recipe
  cnnlab recipes --json"""


def register(sub) -> None:
    p = sub.add_parser("recipes", help="list the training recipes and what each sets",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="List the shipped recipes: each one's description and "
                                   "the config keys it sets (with the recipe it starts from "
                                   "resolved).")
    p.add_argument("names", nargs="*", metavar="NAME", help="recipes to show (default: all)")
    p.add_argument("--json", action="store_true", help="print {name: {description, sets}}")
    p.set_defaults(func=run)


def _value(v) -> str:
    """A value as it would be written in TOML / --set (strings quoted, tables as JSON)."""
    return json.dumps(v) if not isinstance(v, bool) else str(v).lower()


def run(args: argparse.Namespace) -> int:
    recipes = list_recipes()
    names = args.names or list(recipes)
    tables = {n: recipe_table(n) for n in names}  # an unknown name: a one-line error
    if args.json:
        print(json.dumps({n: {"description": recipes.get(n, ""), "sets": tables[n]}
                          for n in names}, indent=2))
        return 0
    for i, n in enumerate(names):
        if i:
            print()
        print(f"{n}: {recipes.get(n, '')}")
        width = max((len(k) for k in tables[n]), default=0)
        for key, value in tables[n].items():
            print(f"    {key:<{width}} = {_value(value)}")
    return 0
