"""Residual connections: ``y = act(f(x) + shortcut(x))`` (He et al. 2016)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.drop import DropPath
from cnnlab.layers.factory import get_act_layer, get_norm_layer

PROJECTIONS = ("auto", "none", "conv")


def projection_shortcut(in_channels: int, out_channels: int, stride: int = 1,
                        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d
                        ) -> nn.Sequential:
    """1x1 convolution with ``stride`` then ``norm_layer(out_channels)`` (ResNet's option B);
    the convolution has a bias only when there is no norm."""
    mods: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 1, stride=stride,
                                       bias=norm_layer is None)]
    if norm_layer is not None:
        mods.append(norm_layer(out_channels))
    return nn.Sequential(*mods)


class Residual(nn.Module):
    """Add a shortcut around a branch: ``y = act(drop_path(f(x)) + shortcut(x))``.

    x: (B, in_channels, H, W) -> y: (B, out_channels, H / stride, W / stride).

    Args:
        f: the residual branch; it must map x to the output shape above.
        projection: "auto" (identity when ``in_channels == out_channels`` and
            ``stride == 1``, else a 1x1 convolution with ``stride`` and normalization),
            "conv" (always the projection) or "none" (always the identity).
        in_channels, out_channels: the branch's channel counts; needed for a projection
            (``out_channels`` defaults to ``in_channels``). Without them "auto" is the
            identity, and a shape mismatch is reported on the first forward.
        stride: the branch's spatial stride.
        norm_layer: the projection's norm (a type or a factory name such as "bn"; None for
            a plain convolution with bias).
        act_layer: an activation applied after the addition (ResNet's post-activation
            ``nn.ReLU``); None (default) for none, as in pre-activation blocks.
        drop_path: stochastic-depth probability for the branch (0 = off).
    """

    def __init__(
        self,
        f: nn.Module,
        projection: str = "auto",
        in_channels: int | None = None,
        out_channels: int | None = None,
        stride: int = 1,
        norm_layer: Callable[[int], nn.Module] | str | None = nn.BatchNorm2d,
        act_layer: type[nn.Module] | str | None = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if projection not in PROJECTIONS:
            raise ModelError(f"Residual projection must be one of {', '.join(PROJECTIONS)}, "
                             f"got {projection!r}")
        if stride < 1:
            raise ModelError(f"Residual stride must be >= 1, got {stride}")
        if out_channels is None:
            out_channels = in_channels
        norm_layer = get_norm_layer(norm_layer)
        self.branch = f
        differs = in_channels is not None and (in_channels != out_channels or stride != 1)
        if projection == "conv" or (projection == "auto" and differs):
            if in_channels is None:
                raise ModelError("Residual with a projection needs in_channels (and "
                                 "out_channels when they differ)")
            self.shortcut: nn.Module = projection_shortcut(in_channels, out_channels, stride,
                                                           norm_layer)
        else:
            self.shortcut = nn.Identity()
        self.projection, self.stride = projection, stride
        self.in_channels, self.out_channels = in_channels, out_channels
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        act = get_act_layer(act_layer)
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.branch(x))  # (B, C_out, H / s, W / s)
        short = self.shortcut(x)
        if out.shape != short.shape:
            raise ModelError(
                f"Residual branch output {tuple(out.shape)} does not match the shortcut "
                f"{tuple(short.shape)}; pass in_channels, out_channels and stride so that "
                f"projection='auto' adds a 1x1 convolution"
            )
        return self.act(out + short)

    def extra_repr(self) -> str:
        return (f"projection={self.projection}, in_channels={self.in_channels}, "
                f"out_channels={self.out_channels}, stride={self.stride}")


__all__ = ["Residual", "projection_shortcut"]
