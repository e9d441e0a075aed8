"""Turn the strings of a config ("bn", "relu", ...) into layer classes.

Models take layer *types* (``norm_layer=nn.BatchNorm2d``); strings become types only
here, at the config/registry boundary.  A norm layer type is called as ``norm_layer(C)``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from torch import nn

from cnnlab.errors import ModelError

_NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    "bn": nn.BatchNorm2d,
    "batchnorm": nn.BatchNorm2d,
    "none": None,
}
_ACTS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "hardswish": nn.Hardswish,
    "identity": nn.Identity,
}


def register_norm(name: str, layer: Callable[[int], nn.Module] | None) -> None:
    _NORMS[name] = layer


def _lookup(table: dict, kind: str, name):
    if name is None or not isinstance(name, str):
        return name  # already a type (or None)
    key = name.lower()
    if key not in table:
        close = difflib.get_close_matches(key, table, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ModelError(f"unknown {kind} '{name}'{hint}; choose from {', '.join(sorted(table))}")
    return table[key]


def get_norm_layer(name) -> Callable[[int], nn.Module] | None:
    """"bn" -> nn.BatchNorm2d, "none" -> None; a type passes through unchanged."""
    return _lookup(_NORMS, "norm", name)


def get_act_layer(name) -> type[nn.Module]:
    """"relu" -> nn.ReLU, ...; a type passes through unchanged."""
    return _lookup(_ACTS, "activation", name)


def norm_names() -> list[str]:
    return sorted(_NORMS)


def act_names() -> list[str]:
    return sorted(_ACTS)
