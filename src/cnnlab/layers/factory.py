"""Turn the strings of a config ("bn", "relu", ...) into layer classes.

Models take layer *types* (``norm_layer=nn.BatchNorm2d``); strings become types only
here, at the config/registry boundary.  A norm layer type is called as ``norm_layer(C)``.

Norm names (see :mod:`cnnlab.layers.norm` for the axes each one normalizes over):

    bn, batchnorm        nn.BatchNorm2d
    ln, layernorm        LayerNormCHW: statistics over (C, H, W) per sample, (C,) affine
                         (the "LN" of Ba et al. and of Wu & He's comparison; GroupNorm(1, C))
    ln2d, layernorm2d    LayerNorm2d: over C at each pixel (ConvNeXt)
    gn, groupnorm        GroupNorm with default_groups(C) groups; "gnN" (e.g. "gn8") N groups
    in, instancenorm     InstanceNorm (affine)
    bcn                  BatchChannelNorm (batch norm, then group norm)
    none                 no normalization (None)

Conv names: "conv" (Conv2d: nn.Conv2d with a fast path for maps smaller than the kernel),
"ws" / "wsconv" (WSConv2d, weight-standardized).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from torch import nn

from cnnlab.errors import ModelError, did_you_mean
from cnnlab.layers.conv import Conv2d
from cnnlab.layers.norm import (
    BatchChannelNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm2d,
    LayerNormCHW,
    WSConv2d,
)

_NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    "bn": nn.BatchNorm2d,
    "batchnorm": nn.BatchNorm2d,
    "ln": LayerNormCHW,
    "layernorm": LayerNormCHW,
    "ln2d": LayerNorm2d,
    "layernorm2d": LayerNorm2d,
    "gn": GroupNorm,
    "groupnorm": GroupNorm,
    "in": InstanceNorm,
    "instancenorm": InstanceNorm,
    "bcn": BatchChannelNorm,
    "none": None,
}
_CONVS: dict[str, type[nn.Module]] = {
    "conv": Conv2d,
    "ws": WSConv2d,
    "wsconv": WSConv2d,
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
    """Make ``layer`` (called as ``layer(C)``; None for no norm) available as ``name``."""
    _NORMS[name] = layer


def _lookup(table: dict, kind: str, name):
    if name is None or not isinstance(name, str):
        return name  # already a type (or None)
    key = name.lower()
    if key not in table:
        raise ModelError(f"unknown {kind} '{name}'{did_you_mean(key, table)}; "
                         f"choose from {', '.join(sorted(table))}")
    return table[key]


def get_norm_layer(name) -> Callable[[int], nn.Module] | None:
    """"bn" -> nn.BatchNorm2d, "gn" -> GroupNorm, "gn8" -> GroupNorm with 8 groups,
    "none" -> None, ...; a type (or any callable) passes through unchanged."""
    if isinstance(name, str):
        m = re.fullmatch(r"gn(\d+)", name.strip().lower())
        if m:
            groups = int(m.group(1))
            if groups < 1:
                raise ModelError(f"norm '{name}' needs at least one group")
            return functools.partial(GroupNorm, num_groups=groups)
    return _lookup(_NORMS, "norm", name)


def get_act_layer(name) -> type[nn.Module]:
    """"relu" -> nn.ReLU, ...; a type passes through unchanged."""
    return _lookup(_ACTS, "activation", name)


def get_conv_layer(name) -> type[nn.Module]:
    """"conv" -> Conv2d, "ws" -> WSConv2d; a type passes through unchanged."""
    return _lookup(_CONVS, "conv", name)


def norm_names() -> list[str]:
    return sorted(_NORMS)
