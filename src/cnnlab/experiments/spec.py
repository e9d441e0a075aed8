"""Sweep specifications: a base run config, grid axes, repetitions and seeding, in TOML.

    name = "seed-depth"
    reps = 3
    seed = 0
    seeds = "per-rep"            # per-rep: run seed = seed + rep (paired across cells)
                                 # per-run: a distinct seed for every (cell, rep)
    backend = "ray"              # optional: where the runs go (local: a process pool on
    address = "auto"             #   this machine, the default; ray: a Ray cluster at
    gpus_per_run = 0.25          #   address), and each GPU run's share of a GPU on Ray
    [base.model]                 # any run-config tables: data, model, optim, train
    name = "vgg"
    [grid]                       # axes: dotted config keys -> lists of values
    "model.blocks" = [1, 2, 3, 4, 5]
    "model.layers" = [1, 2, 3]
    [variants.dropout]           # optional named override sets, used as grid value
    "model.dropout" = 0.3        #   of the special axis "variant"
    analysis = "memorization"    # optional: the report's phenomenon figure and verdict
    [sizes.digits]               # optional: the sweep's form for `--data digits` (the
    reps = 2                     #   source name before any ':'): reps, grid axes that
    [sizes.digits.grid]          #   replace the main grid's, and overrides under the
    "data.train_size" = [100, 400]  # user's; the sweep is then named NAME-digits
    [sizes.digits.set]
    "train.epochs" = 40

A recipe (``cnnlab recipes``) goes under the base: ``[base] recipe = "rsb-a3"``, or a
grid axis ``recipe = ["classic", "rsb-a3"]`` whose value replaces the base's recipe; either
way the base's keys, the user's overrides and the other axes win over the recipe.

Presets ship as ``cnnlab/experiments/presets/NAME.toml``.
"""

from __future__ import annotations

import hashlib
import itertools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cnnlab.config import RECIPE_KEY, RunConfig, apply_overrides, from_dict, read_toml
from cnnlab.errors import ConfigError, did_you_mean

VARIANT_AXIS = "variant"
BACKENDS = ("local", "ray")  # local: process pool (executor.py); ray: ray_backend.py


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its axis values and the overrides they imply."""

    params: dict  # axis -> value, in axis order
    overrides: dict  # dotted key -> value (variants expanded)

    @property
    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.params.items())


@dataclass
class SweepSpec:
    name: str
    base: dict = field(default_factory=dict)  # nested run-config tables
    grid: dict[str, list] = field(default_factory=dict)  # axis -> values
    variants: dict[str, dict] = field(default_factory=dict)
    reps: int = 3
    seed: int = 0
    seeds: str = "per-rep"
    description: str = ""
    overrides: list[str] = field(default_factory=list)  # applied on top of every cell
    analysis: str = ""  # the report's phenomenon analysis (cnnlab.report.phenomena), if any
    sizes: dict[str, dict] = field(default_factory=dict)  # data source -> its smaller form
    size: str = ""  # the size applied (then ``sizes`` is empty)
    backend: str = "local"  # where the runs go: one of BACKENDS
    address: str = ""  # Ray cluster address (auto, HOST:PORT); "" = Ray's default
    gpus_per_run: float | None = None  # Ray: GPUs per run (0.25: four runs share one)

    @property
    def axes(self) -> list[str]:
        return list(self.grid)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "reps": self.reps,
                "seed": self.seed, "seeds": self.seeds, "base": self.base, "grid": self.grid,
                "variants": self.variants, "overrides": self.overrides,
                "analysis": self.analysis, "sizes": self.sizes, "size": self.size,
                "backend": self.backend, "address": self.address,
                "gpus_per_run": self.gpus_per_run}

    def cells(self) -> list[Cell]:
        out = []
        for values in itertools.product(*self.grid.values()):
            params = dict(zip(self.grid, values))
            overrides = {}
            for axis, value in params.items():
                if axis == VARIANT_AXIS:
                    overrides.update(self.variants[value])
                else:
                    overrides[axis] = value
            out.append(Cell(params, overrides))
        return out

    def run_seed(self, cell: Cell, rep: int) -> int:
        if self.seeds == "per-rep":
            return self.seed + rep
        digest = hashlib.sha256(f"{self.seed}|{cell.key}|{rep}".encode()).digest()
        return int.from_bytes(digest[:4], "little")

    def base_config(self, recipe: str | None = None) -> RunConfig:
        """The base tables (with ``recipe`` in place of the base's own, if given), then
        the user's overrides."""
        table = {**self.base, **({RECIPE_KEY: recipe} if recipe else {})}
        cfg = from_dict(table)
        return apply_overrides(cfg, self.overrides) if self.overrides else cfg

    def cell_config(self, cell: Cell) -> RunConfig:
        """A cell's config before its seed: a recipe value goes under the base, the other
        grid values are applied last (they win over base and user overrides)."""
        rest = {k: v for k, v in cell.overrides.items() if k != RECIPE_KEY}
        return apply_overrides(self.base_config(cell.overrides.get(RECIPE_KEY)), rest)

    def run_config(self, cell: Cell, rep: int) -> RunConfig:
        return apply_overrides(self.cell_config(cell), {"train.seed": self.run_seed(cell, rep)})

    def validate(self) -> None:
        if self.reps < 1:
            raise ConfigError(f"sweep '{self.name}': reps must be >= 1, got {self.reps}")
        if self.seeds not in ("per-rep", "per-run"):
            raise ConfigError(f"sweep '{self.name}': seeds must be per-rep or per-run, "
                              f"got {self.seeds!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"sweep '{self.name}': backend must be one of "
                              f"{', '.join(BACKENDS)}, got {self.backend!r}"
                              f"{did_you_mean(self.backend, BACKENDS)}")
        check_gpus_per_run(self.gpus_per_run)
        for axis, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep '{self.name}': grid axis '{axis}' needs a non-empty "
                                  f"list of values")
            if axis == VARIANT_AXIS:
                missing = [v for v in values if v not in self.variants]
                if missing:
                    raise ConfigError(f"sweep '{self.name}': variant(s) {missing} have no "
                                      f"[variants.NAME] table")
        for source, size in self.sizes.items():
            unknown = set(size) - _SIZE_KEYS
            if unknown:
                raise ConfigError(f"sweep '{self.name}': [sizes.{source}] has unknown key(s) "
                                  f"{sorted(unknown)}; allowed: {sorted(_SIZE_KEYS)}")
            extra = set(size.get("grid", {})) - set(self.grid)
            if extra:
                raise ConfigError(f"sweep '{self.name}': [sizes.{source}.grid] names axes "
                                  f"{sorted(extra)} that the grid does not have")
        self.base_config()  # raises on a bad base key
        cells = self.cells()
        for cell in (cells[0], cells[-1]):
            self.cell_config(cell)  # raises on a bad axis key or value


def check_gpus_per_run(gpus: float | None) -> None:
    """Ray's rule for a task's GPUs: a fraction in (0, 1] or a whole number."""
    if gpus is None:
        return
    if not isinstance(gpus, int | float) or isinstance(gpus, bool) or gpus <= 0 \
            or (gpus > 1 and gpus != int(gpus)):
        raise ConfigError(f"gpus_per_run must be a fraction in (0, 1] or a whole number of "
                          f"GPUs, got {gpus!r}")


def _dotted_keys(table: dict, prefix: str = "") -> dict[str, Any]:
    """Nested tables as one table of dotted keys: ``{"model": {"blocks": v}}`` ->
    ``{"model.blocks": v}`` (what TOML makes of ``model.blocks = v`` undone)."""
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(_dotted_keys(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


_SIZE_KEYS = {"description", "reps", "grid", "set"}


def spec_from_dict(table: dict, name: str | None = None) -> SweepSpec:
    known = {"name", "description", "reps", "seed", "seeds", "base", "grid", "variants",
             "overrides", "analysis", "sizes", "size", "backend", "address", "gpus_per_run"}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"unknown sweep key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    spec = SweepSpec(
        name=table.get("name") or name or "sweep",
        description=table.get("description", ""),
        base=table.get("base", {}),
        grid=_dotted_keys(table.get("grid", {})),
        variants={k: _dotted_keys(v) for k, v in table.get("variants", {}).items()},
        reps=int(table.get("reps", 3)),
        seed=int(table.get("seed", 0)),
        seeds=table.get("seeds", "per-rep"),
        overrides=list(table.get("overrides", [])),
        analysis=str(table.get("analysis", "")),
        sizes={k: {**v, "grid": _dotted_keys(v.get("grid", {})),
                   "set": _dotted_keys(v.get("set", {}))}
               for k, v in table.get("sizes", {}).items()},
        size=str(table.get("size", "")),
        backend=str(table.get("backend", "local")),
        address=str(table.get("address") or ""),
        gpus_per_run=table.get("gpus_per_run"),
    )
    spec.validate()
    return spec


def list_presets() -> dict[str, str]:
    """Preset name -> one-line description."""
    out = {}
    for entry in sorted(resources.files("cnnlab.experiments.presets").iterdir(),
                        key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            table = tomllib.loads(entry.read_text())
            out[entry.name[:-5]] = table.get("description", "")
    return out


def load_spec(name_or_path: str | Path) -> SweepSpec:
    """A preset name (``seed-depth``) or a path to a sweep TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return spec_from_dict(read_toml(path, "sweep file"), path.stem)
    presets = list_presets()
    if str(name_or_path) not in presets:
        hint = did_you_mean(str(name_or_path), presets, n=2)
        raise ConfigError(f"unknown sweep preset '{name_or_path}'{hint} "
                          f"(presets: {', '.join(presets)}; or give a .toml file)")
    text = (resources.files("cnnlab.experiments.presets") / f"{name_or_path}.toml").read_text()
    return spec_from_dict(tomllib.loads(text), str(name_or_path))


def resolve_spec(spec_or_path: str | Path | SweepSpec | dict, *, data: str | None = None,
                 overrides: list[str] | None = None, reps: int | None = None,
                 seed: int | None = None, recipe: str | None = None) -> SweepSpec:
    """A sweep spec from a preset name, TOML path, dict or SweepSpec, with ``data``
    (replaces ``data.spec``), ``overrides`` (``["optim.lr=3e-3"]``, applied to every cell
    under the grid's values), ``reps`` and ``seed`` (the base seed run seeds derive from)
    applied; ``recipe`` replaces the base's recipe (a ``recipe`` grid axis still wins)."""
    if isinstance(spec_or_path, SweepSpec):
        spec = spec_or_path
    elif isinstance(spec_or_path, dict):
        spec = spec_from_dict(spec_or_path)
    else:
        spec = load_spec(spec_or_path)
    extra = list(overrides or [])
    table = spec.to_dict()
    if data:
        size_name = data.split(":", 1)[0]
        if size_name in spec.sizes:
            table = _with_size(table, size_name)
        extra.insert(0, f"data.spec={data!r}")
    if recipe:
        table = {**table, "base": {**table["base"], RECIPE_KEY: str(recipe)}}
    if extra or reps or recipe or seed is not None or table["size"] != spec.size:
        spec = spec_from_dict({**table, "overrides": table["overrides"] + extra,
                               "reps": reps or table["reps"],
                               "seed": spec.seed if seed is None else seed})
    return spec


def _with_size(table: dict, size_name: str) -> dict:
    """The sweep table with ``[sizes.NAME]`` applied: its ``set`` keys go into the base
    tables, under the overrides (the user's win), its grid axes replace the grid's."""
    size = table["sizes"][size_name]
    base = {group: dict(values) if isinstance(values, dict) else values  # recipe = "x"
            for group, values in table["base"].items()}
    for key, value in size.get("set", {}).items():
        group, _, name = key.partition(".")
        base.setdefault(group, {})[name] = value
    return {**table, "name": f"{table['name']}-{size_name}", "size": size_name, "sizes": {},
            "description": size.get("description", table["description"]),
            "reps": size.get("reps", table["reps"]), "base": base,
            "grid": {**table["grid"], **size.get("grid", {})}}
