"""The dropout family: dropout, spatial dropout, Cutout, DropConnect and DropPath.

Each regularizer is a function (the functional core) plus a thin ``nn.Module`` that reads
``self.training``, so ``model.train()`` / ``model.eval()`` switch its behaviour exactly as
they do for torch's own layers::

    y = dropout(x, 0.5, training=True, mode="standard")
    layer = Dropout(0.5, mode="standard")       # layer.eval(): y = x * (1 - p)

Two modes share the same expected output (E over the mask):

- ``"inverted"`` (default, what ``torch.nn.Dropout`` does): keep units with probability
  ``1 - p`` and scale them by ``1 / (1 - p)`` during training; the identity at inference.
- ``"standard"`` (Srivastava et al. 2014): keep units without scaling during training;
  multiply by ``1 - p`` at inference.

Every random draw goes through ``generator`` when one is given (a ``torch.Generator`` on
the input's device), else through torch's global generator; masks are drawn with tensor
ops for the whole batch at once, never in a Python loop over samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from cnnlab.errors import ModelError
from cnnlab.layers.conv import Conv2d

MODES = ("inverted", "standard")


def _check(p: float, mode: str, what: str) -> None:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise ModelError(f"{what} probability p must be a number in [0, 1], got {p!r}")
    if mode not in MODES:
        raise ModelError(f"{what} mode must be 'inverted' or 'standard', got {mode!r}")


def _drop(
    x: torch.Tensor,
    mask_shape: tuple[int, ...],
    p: float,
    training: bool,
    mode: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Multiply ``x`` by a Bernoulli(1 - p) keep mask of ``mask_shape`` (broadcast to x)."""
    if not training:
        return x * (1.0 - p) if mode == "standard" and p > 0 else x
    if p == 0.0:
        return x
    keep = 1.0 - p
    mask = (torch.rand(mask_shape, generator=generator, device=x.device) < keep).to(x.dtype)
    if mode == "inverted" and keep > 0:
        mask.div_(keep)  # E[mask] = 1
    return x * mask


# ---------------------------------------------------------------------------------------
# functional core


def dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    mode: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero each element independently with probability ``p`` (see the module docstring
    for the two modes)."""
    _check(p, mode, "dropout")
    return _drop(x, tuple(x.shape), p, training, mode, generator)


def spatial_dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    mode: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole channels: one draw per (sample, channel) of x (B, C, *spatial).

    Neighbouring pixels of a feature map are strongly correlated, so element-wise dropout
    hardly removes information there; dropping whole channels does (Tompson et al. 2015).
    """
    _check(p, mode, "spatial dropout")
    if x.dim() < 2:
        raise ModelError(f"spatial dropout needs an input (B, C, ...), got shape {tuple(x.shape)}")
    mask_shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)  # (B, C, 1, 1)
    return _drop(x, mask_shape, p, training, mode, generator)


def drop_path(
    x: torch.Tensor,
    p: float = 0.0,
    training: bool = True,
    *,
    mode: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Stochastic depth: drop a residual branch's whole output per sample.

    Apply to the branch ``f(x)`` before the addition ``x + f(x)``: a dropped sample then
    passes through the block as the identity (Huang et al. 2016, "Deep Networks with
    Stochastic Depth"). One draw per sample: the mask is (B, 1, 1, ...).
    """
    _check(p, mode, "drop path")
    mask_shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # (B, 1, 1, 1)
    return _drop(x, mask_shape, p, training, mode, generator)


def drop_connect(
    w: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    mode: str = "inverted",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the weights to use for one forward pass: ``w`` times a Bernoulli(1 - p) mask.

    DropConnect (Wan et al. 2013) drops connections (weights) rather than units. The mask
    has w's shape and is drawn afresh on every call, i.e. once per forward pass (batch),
    shared by the samples of that batch. At inference it returns the expected weights
    E[mask * w]: ``w`` in inverted mode (masked weights were scaled by 1 / (1 - p)) and
    ``(1 - p) * w`` in standard mode (the paper's mean-field inference).
    """
    _check(p, mode, "drop connect")
    return _drop(w, tuple(w.shape), p, training, mode, generator)


def _patch_side(size: int | float, h: int, w: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int | float) or size <= 0:
        raise ModelError(f"cutout size must be a positive int (pixels) or a fraction in (0, 1], "
                         f"got {size!r}")
    if isinstance(size, float):
        if size > 1:
            raise ModelError(f"cutout size as a float is a fraction of the side in (0, 1], "
                             f"got {size}")
        return max(1, round(size * min(h, w)))
    return size


def cutout(
    x: torch.Tensor,
    size: int | float,
    training: bool = True,
    *,
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero one random ``size`` x ``size`` square in every channel of each sample.

    x: (B, C, H, W) feature maps (or images). ``size`` is in pixels (int) or a fraction of
    the shorter side (float in (0, 1]). Each sample draws its own patch centre uniformly
    over the map; the patch is clipped at the border, as in DeVries & Taylor 2017
    ("Improved Regularization of CNNs with Cutout"). ``p`` is the probability that a sample
    gets a patch at all. At inference Cutout is the identity (no rescaling).
    """
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise ModelError(f"cutout probability p must be a number in [0, 1], got {p!r}")
    if x.dim() != 4:
        raise ModelError(f"cutout needs an input (B, C, H, W), got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    side = _patch_side(size, h, w)
    if not training or p == 0.0:
        return x
    dev = x.device
    cy = torch.randint(0, h, (b,), generator=generator, device=dev)  # (B,) patch centres
    cx = torch.randint(0, w, (b,), generator=generator, device=dev)
    y0, x0 = cy - side // 2, cx - side // 2  # (B,) top-left corners, may lie outside
    rows = torch.arange(h, device=dev)[None, :]  # (1, H)
    cols = torch.arange(w, device=dev)[None, :]  # (1, W)
    in_y = (rows >= y0[:, None]) & (rows < (y0 + side)[:, None])  # (B, H)
    in_x = (cols >= x0[:, None]) & (cols < (x0 + side)[:, None])  # (B, W)
    hole = in_y[:, :, None] & in_x[:, None, :]  # (B, H, W)
    if p < 1.0:
        hole &= (torch.rand(b, generator=generator, device=dev) < p)[:, None, None]
    return x.masked_fill(hole[:, None], 0)  # same patch in every channel


# ---------------------------------------------------------------------------------------
# modules


class _Drop(nn.Module):
    """Shared state of the mask-based modules: ``p``, ``mode`` and an optional generator."""

    _what = "dropout"

    def __init__(self, p: float, mode: str = "inverted", generator: torch.Generator | None = None):
        super().__init__()
        _check(p, mode, self._what)
        self.p, self.mode, self.generator = float(p), mode, generator

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class Dropout(_Drop):
    """Element-wise dropout with a choice of ``mode`` ("inverted" or "standard")."""

    def __init__(self, p: float = 0.5, mode: str = "inverted",
                 generator: torch.Generator | None = None):
        super().__init__(p, mode, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, mode=self.mode, generator=self.generator)


class SpatialDropout(_Drop):
    """Channel-wise dropout of (B, C, ...) feature maps (see :func:`spatial_dropout`)."""

    _what = "spatial dropout"

    def __init__(self, p: float = 0.5, mode: str = "inverted",
                 generator: torch.Generator | None = None):
        super().__init__(p, mode, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spatial_dropout(x, self.p, self.training, mode=self.mode, generator=self.generator)


class DropPath(_Drop):
    """Stochastic depth on a residual branch, per sample (see :func:`drop_path`)."""

    _what = "drop path"

    def __init__(self, p: float = 0.0, mode: str = "inverted",
                 generator: torch.Generator | None = None):
        super().__init__(p, mode, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training, mode=self.mode, generator=self.generator)


class Cutout(nn.Module):
    """Zero a random square per sample of (B, C, H, W) maps in training (see :func:`cutout`)."""

    def __init__(self, size: int | float, p: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        _patch_side(size, 1, 1)  # validate now; the fraction is resolved per input
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise ModelError(f"cutout probability p must be a number in [0, 1], got {p!r}")
        self.size, self.p, self.generator = size, float(p), generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cutout(x, self.size, self.training, p=self.p, generator=self.generator)

    def extra_repr(self) -> str:
        return f"size={self.size}, p={self.p}"


class DropConnectLinear(nn.Linear):
    """``nn.Linear`` whose weight matrix is DropConnect-masked in training.

    The bias is not masked. Weights and state dict are those of ``nn.Linear``; in inverted
    mode a trained layer's weights can be loaded into a plain ``nn.Linear`` unchanged.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 p: float = 0.5, mode: str = "inverted",
                 generator: torch.Generator | None = None, device=None, dtype=None):
        _check(p, mode, "drop connect")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.p, self.mode, self.generator = float(p), mode, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = drop_connect(self.weight, self.p, self.training, mode=self.mode,
                         generator=self.generator)  # (out, in), one mask per batch
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}, mode={self.mode}"


class DropConnectConv2d(Conv2d):
    """``Conv2d`` whose kernel is DropConnect-masked in training (element-wise on the
    (out, in / groups, kh, kw) weight; the bias is not masked). Takes nn.Conv2d's arguments
    plus keyword-only ``p``, ``mode`` and ``generator``."""

    def __init__(self, *args, p: float = 0.5, mode: str = "inverted",
                 generator: torch.Generator | None = None, **kwargs):
        _check(p, mode, "drop connect")
        super().__init__(*args, **kwargs)
        self.p, self.mode, self.generator = float(p), mode, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = drop_connect(self.weight, self.p, self.training, mode=self.mode,
                         generator=self.generator)
        return self._conv_forward(x, w, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}, mode={self.mode}"


class DropConnect(nn.Module):
    """Wrap any layer that has a ``weight`` (Linear, Conv2d, ...) with DropConnect.

    ``DropConnect(nn.Linear(128, 10), p=0.5)``: each forward pass calls the wrapped layer
    with ``drop_connect(layer.weight, ...)`` in place of its weight. The wrapped layer keeps
    its parameters (state-dict keys gain the prefix ``module.``).
    """

    def __init__(self, module: nn.Module, p: float = 0.5, mode: str = "inverted",
                 generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(getattr(module, "weight", None), torch.Tensor):
            raise ModelError(f"DropConnect needs a layer with a weight, got "
                             f"{type(module).__name__}")
        _check(p, mode, "drop connect")
        self.module, self.p, self.mode, self.generator = module, float(p), mode, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or (not self.training and self.mode == "inverted"):
            return self.module(x)
        w = drop_connect(self.module.weight, self.p, self.training, mode=self.mode,
                         generator=self.generator)
        return functional_call(self.module, {"weight": w}, (x,))

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


__all__ = [
    "Cutout", "DropConnect", "DropConnectConv2d", "DropConnectLinear", "DropPath", "Dropout",
    "SpatialDropout", "cutout", "drop_connect", "drop_path", "dropout", "spatial_dropout",
]
