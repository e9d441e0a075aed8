"""Augmentation pipelines: an ordered list of ops, each with a probability and a magnitude.

In the spirit of the Augmentor library a pipeline is data: from Python,

    Pipeline([Crop(pad=4), HFlip(p=0.5), RandAugment(n=2, m=9), MixUp(alpha=0.2)])

or from the run config (TOML), where ``data.augment`` is a preset name or a list of op
tables, optionally mixing in presets by name::

    [data]
    augment = [{op = "hflip", p = 0.5}, {op = "crop", pad = 4},
               {op = "randaugment", n = 2, m = 9}, {op = "mixup", alpha = 0.2}]

Every table has ``op`` (a name from :data:`OPS`), optional ``p`` and op parameters; the
generic key ``magnitude`` sets the op's main parameter (``degrees`` for rotate, ``pad``
for crop, ``m`` for randaugment, ...).

The presets (:data:`PRESETS`: ``flip-crop``, ``modern``, ...) are such lists too, kept
in ``presets.toml`` beside this file.

Consecutive geometric ops with the same padding run as ONE resampling per batch: their
per-sample affine maps are multiplied and applied by a single ``grid_sample`` (nearest
when every op in the run is exact on the pixel grid, e.g. crop + flip).
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from cnnlab.config import read_toml
from cnnlab.data.augment.augbase import ALIASES, OPS, Op
from cnnlab.data.augment.geometry import Crop, GeometricOp, HFlip, affine
from cnnlab.data.loader import Augment
from cnnlab.errors import ConfigError, did_you_mean


def _op_key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def make_op(table: dict[str, Any] | str, num_classes: int | None = None) -> Op:
    """Build one op from a table ``{"op": name, param: value, ...}`` or a bare name."""
    if isinstance(table, str):
        table = {"op": table}
    if not isinstance(table, dict) or "op" not in table:
        raise ConfigError(f"data.augment: each op must be a table with an 'op' key, "
                          f"got {table!r}")
    key = _op_key(table["op"])
    key = ALIASES.get(key, key)
    if key not in OPS:
        raise ConfigError(f"data.augment: unknown op '{table['op']}'{did_you_mean(key, OPS)}; "
                          f"allowed: {', '.join(OPS)}")
    cls = OPS[key]
    kwargs = {k: v for k, v in table.items() if k != "op"}
    if "magnitude" in kwargs and cls.magnitude_param not in (None, "magnitude"):
        if cls.magnitude_param in kwargs:
            raise ConfigError(f"augment op '{key}': give magnitude or "
                              f"{cls.magnitude_param}, not both")
        kwargs[cls.magnitude_param] = kwargs.pop("magnitude")
    allowed = list(cls.params) + (["magnitude"] if cls.magnitude_param else [])
    for k in kwargs:
        if k not in cls.params:
            raise ConfigError(f"augment op '{key}': unknown parameter '{k}'"
                              f"{did_you_mean(k, allowed)}; allowed: {', '.join(allowed)}")
    if cls.needs_num_classes:
        kwargs["num_classes"] = num_classes
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"augment op '{key}': {e}") from None


class Pipeline:
    """An ordered list of ops applied to (x, y) batches: ``(x, y, generator) -> (x, y)``.

    ``x`` float (B, C, H, W) in [0, 1] on any device, ``y`` int64 (B,) (soft (B, K) after
    a mixing op), ``generator`` a ``torch.Generator`` on x's device: every random draw
    goes through it, so a seeded generator reproduces a batch exactly.
    """

    def __init__(self, ops: Sequence[Op], name: str | None = None):
        self.ops = list(ops)
        self.name = name
        self._steps = self._plan(self.ops)

    @staticmethod
    def _plan(ops: list[Op]) -> list[Op | list[GeometricOp]]:
        """Group runs of fusable geometric ops that share a padding (one resampling each)."""
        steps: list[Op | list[GeometricOp]] = []
        group: list[GeometricOp] = []

        def flush():
            if len(group) == 1:
                steps.append(group[0])
            elif group:
                steps.append(list(group))
            group.clear()

        for op in ops:
            if isinstance(op, GeometricOp) and op.fusable:
                pads = {(g.padding, g.fill) for g in (*group, op) if g.padding is not None}
                if group and (len(pads) > 1 or group[-1].has_remainder):
                    flush()
                group.append(op)
            else:
                flush()
                steps.append(op)
        flush()
        return steps

    @property
    def steps(self) -> list[Op | list[GeometricOp]]:
        """The execution plan: single ops, and lists of ops fused into one resampling."""
        return list(self._steps)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        for step in self._steps:
            if isinstance(step, list):
                x, y = self._fused(step, x, y, generator)
            else:
                x, y = step(x, y, generator)
        return x, y

    @staticmethod
    def _fused(group: list[GeometricOp], x, y, generator):
        params = [op.sample(x.shape, generator, x.device) for op in group]  # draw order = op order
        m = group[0].matrix(params[0], x.shape)
        for op, p in zip(group[1:], params[1:]):
            m = m @ op.matrix(p, x.shape)  # (B, 3, 3): the first op acts first
        exact = all(op.interpolation == "nearest" for op in group)
        padded = [op for op in group if op.padding is not None]
        padding, fill = (padded[0].padding, padded[0].fill) if padded else ("zeros", 0.0)
        projective = any(op.projective for op in group)
        x = affine(x, m, "nearest" if exact else "bilinear", padding, fill, projective)
        for op, p in zip(group, params):
            if op.has_remainder:
                x, y = op.remainder(x, y, p)
        return x, y

    def config(self) -> list[dict[str, Any]]:
        """The pipeline as a ``data.augment`` list of tables."""
        return [op.config() for op in self.ops]

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self):
        return iter(self.ops)

    def __repr__(self) -> str:
        inner = ", ".join(repr(op) for op in self.ops)
        return f"Pipeline({self.name!r}: [{inner}])" if self.name else f"Pipeline([{inner}])"


class FlipCrop(Pipeline):
    """The classic CIFAR recipe: random crop with padding, then horizontal flip.

    Both run as one exact (nearest) resampling per batch.  ``mode``: ``constant``
    (zero padding) or ``reflect``.
    """

    def __init__(self, pad: int = 4, flip_p: float = 0.5, mode: str = "constant"):
        self.pad, self.flip_p, self.mode = pad, flip_p, mode
        ops: list[Op] = [Crop(pad=pad, padding=mode)] if pad else []
        ops += [HFlip(flip_p)] if flip_p else []
        super().__init__(ops, "flip-crop")

    def __repr__(self) -> str:
        return f"FlipCrop(pad={self.pad}, flip_p={self.flip_p}, mode={self.mode!r})"


# -- presets: named lists of op tables, in presets.toml -----------------------------------

@functools.cache
def _preset_tables() -> dict[str, list]:
    """Preset name -> its items (op tables or names of other presets), in file order."""
    text = (resources.files(__package__) / "presets.toml").read_text()
    return tomllib.loads(text)


PRESETS: tuple[str, ...] = tuple(_preset_tables())


def _sized(table: dict[str, Any], image_size: int) -> dict[str, Any]:
    """Resolve a preset table's image-size-relative values: ``{image_size = f, min = m}``
    stands for max(m, floor(f * image_size)) pixels."""
    return {k: max(v.get("min", 0), math.floor(v["image_size"] * image_size))
            if isinstance(v, dict) else v for k, v in table.items()}


def preset_ops(name: str, num_classes: int | None, image_size: int = 32) -> list[Op]:
    """The ops of a named preset for images of side ``image_size``."""
    key = _op_key(name).replace("_", "-")
    if key not in PRESETS:
        raise ConfigError(f"data.augment = {name!r} is not a known preset"
                          f"{did_you_mean(key, PRESETS)}; presets: {', '.join(PRESETS)}, or a "
                          "list of op tables such as "
                          '[{op="hflip", p=0.5}, {op="crop", pad=4}]')
    ops: list[Op] = []
    for item in _preset_tables()[key]:
        if isinstance(item, str):  # another preset, e.g. "flip-crop"
            ops += preset_ops(item, num_classes, image_size)
        else:
            ops.append(make_op(_sized(item, image_size), num_classes))
    return ops


def load_pipeline_file(path: str | Path) -> Any:
    """Read ``augment = ...`` (top level or under ``[data]``) from a TOML file."""
    table = read_toml(path, "pipeline file")
    if "augment" in table:
        return table["augment"]
    if isinstance(table.get("data"), dict) and "augment" in table["data"]:
        return table["data"]["augment"]
    raise ConfigError(f"{path}: no 'augment' key (top level or under [data]); write e.g. "
                      f'augment = [{{op = "hflip", p = 0.5}}]')


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(".toml") or Path(spec).is_file()


def build_pipeline(spec: Any, num_classes: int | None = None, image_size: int = 32
                   ) -> Augment | None:
    """Turn ``data.augment`` into a callable ``(x, y, generator) -> (x, y)``, or None.

    ``spec``: a preset name (:data:`PRESETS`), a path to a TOML file with an ``augment``
    key, a list whose items are op tables, op names or preset names, a single op table,
    or a ready callable (returned as it is).  ``num_classes`` is needed by the mixing
    ops (their labels become soft (B, K)); ``image_size`` scales the presets' crop pad.
    """
    if spec is None or spec is False or (isinstance(spec, str | list | tuple) and not spec):
        return None
    if isinstance(spec, Pipeline):
        return spec if len(spec) else None
    if callable(spec) and not isinstance(spec, str | list | tuple | dict):
        return spec
    name = None
    if isinstance(spec, str):
        if _is_file_spec(spec):
            name = Path(spec).stem
            spec = load_pipeline_file(spec)
            if isinstance(spec, str) and _is_file_spec(spec):
                raise ConfigError(f"data.augment: {name}.toml points at another file {spec!r}")
            return _named(build_pipeline(spec, num_classes, image_size), name)
        name = _op_key(spec).replace("_", "-")
        ops = preset_ops(spec, num_classes, image_size)
    elif isinstance(spec, dict):
        ops = [make_op(spec, num_classes)]
    elif isinstance(spec, list | tuple):
        ops = []
        for i, item in enumerate(spec):
            if isinstance(item, str) and _op_key(item).replace("_", "-") in PRESETS:
                ops += preset_ops(item, num_classes, image_size)
                continue
            try:
                ops.append(make_op(item, num_classes))
            except ConfigError as e:
                raise ConfigError(f"{e} (data.augment item {i + 1})") from None
    else:
        raise ConfigError(f"data.augment must be a preset name or a list of op tables, "
                          f"got {spec!r}")
    return Pipeline(ops, name) if ops else None


def _named(pipe: Augment | None, name: str) -> Augment | None:
    if isinstance(pipe, Pipeline) and pipe.name is None:
        pipe.name = name
    return pipe
