"""Normalization layers beyond ``nn.BatchNorm2d``.

Which axes of a (B, C, H, W) tensor each layer takes its statistics over (Wu & He 2018,
"Group Normalization", Fig. 2), and what its factory name is (``norm_layer(C)``):

    name   layer              statistics over           per      affine parameters
    bn     nn.BatchNorm2d     (B, H, W)                 channel  (C,)
    ln     LayerNormCHW       (C, H, W)                 sample   (C,)
    ln2d   LayerNorm2d        (C,)                      pixel    (C,)      ConvNeXt style
    gn     GroupNorm          (C / G, H, W)             group    (C,)
    in     InstanceNorm       (H, W)                    channel  (C,)
    bcn    BatchChannelNorm   (B, H, W) then (C/G,H,W)  both     (C,) + (C,)

:class:`LayerNorm` is the general form with Keras semantics: any set of axes, and scale and
offset shaped like those axes. It needs the sizes of the axes, so it is not a
``norm_layer(C)``: normalizing (C, H, W) of a feature map is ``LayerNorm((C, H, W),
axis=(1, 2, 3))`` with 2 * C * H * W parameters. ``WSConv2d`` standardizes a convolution's
weights instead of its activations (Qiao et al. 2019), and pairs with ``gn`` or ``bcn``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.conv import Conv2d


def default_groups(num_channels: int, max_groups: int = 32, min_group_size: int = 2) -> int:
    """The group count GroupNorm uses by default for ``num_channels`` channels.

    The largest divisor of C that is at most ``max_groups`` (32, Wu & He 2018) and leaves
    at least ``min_group_size`` channels per group, so small layers do not silently turn
    into instance norm: 64 -> 32, 48 -> 24, 32 -> 16, 16 -> 8, 3 -> 1.
    """
    if num_channels < 1:
        raise ModelError(f"a norm layer needs num_channels >= 1, got {num_channels}")
    for g in range(min(max_groups, num_channels), 0, -1):
        if num_channels % g == 0 and num_channels // g >= min_group_size:
            return g
    return 1


def _low_precision(x: torch.Tensor) -> bool:
    return x.dtype in (torch.float16, torch.bfloat16)


class LayerNorm(nn.Module):
    """Layer normalization over any axes, with the semantics of Keras' LayerNormalization.

    For each sample, mean and (biased) variance are taken across ``axis``; the result is
    scaled and shifted by learnable ``weight`` and ``bias`` of shape ``normalized_shape``,
    one value per element of those axes::

        y = (x - mean_axis(x)) / sqrt(var_axis(x) + eps) * weight + bias

    Args:
        normalized_shape: sizes of the normalized axes, in the order of ``axis`` (an int
            for a single axis). The parameters need these sizes, so they are given here
            rather than inferred on the first call.
        axis: the normalized axes in the tensor's own layout, negative allowed; default:
            the last ``len(normalized_shape)`` axes (torch's ``nn.LayerNorm``). Axis 0 is
            the batch and cannot be normalized over.
        eps: added to the variance (Keras' default is 1e-3, torch's 1e-5).
        elementwise_affine, bias: learn the scale / the offset.

    Examples on a (B, C, H, W) feature map::

        LayerNorm((C, H, W), axis=(1, 2, 3))   # whole map: 2*C*H*W parameters
        LayerNorm(C, axis=1)                   # channels at each pixel (= LayerNorm2d)
        LayerNorm((H, W), axis=(-2, -1))       # each channel's plane

    From Keras (channels-last, (B, H, W, C)) to this layout ((B, C, H, W)) the axes map
    as 0 -> 0, 1 (H) -> 2, 2 (W) -> 3, 3 or -1 (C) -> 1. Keras ``axis=-1`` on images is
    ``axis=1`` here; ``axis=[1, 2, 3]`` is ``axis=(1, 2, 3)`` (the same set) but Keras'
    gamma has shape (H, W, C) where ours is (C, H, W): port it with
    ``gamma.permute(2, 0, 1)``. Parameters follow the order of ``axis``: with
    ``axis=(-1, -2)`` they are (W, H).
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        axis: int | Sequence[int] | None = None,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        shape = tuple(int(s) for s in shape)
        if not shape or any(s < 1 for s in shape):
            raise ModelError(f"LayerNorm normalized_shape must be positive sizes, got "
                             f"{normalized_shape!r}")
        if axis is None:
            axes = tuple(range(-len(shape), 0))
        else:
            axes = (axis,) if isinstance(axis, int) else tuple(int(a) for a in axis)
        if len(axes) != len(shape):
            raise ModelError(f"LayerNorm got {len(axes)} axes {axes} but {len(shape)} sizes "
                             f"{shape}; give one size per normalized axis")
        self.normalized_shape, self.axis, self.eps = shape, axes, float(eps)
        self.elementwise_affine = elementwise_affine
        kw = {"device": device, "dtype": dtype}
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(shape, **kw))
            self.bias = nn.Parameter(torch.zeros(shape, **kw)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _resolve(self, x: torch.Tensor) -> list[int]:
        nd = x.dim()
        axes = []
        for a in self.axis:
            if not -nd <= a < nd:
                raise ModelError(f"LayerNorm axis {a} is out of range for a {nd}-d input of "
                                 f"shape {tuple(x.shape)}")
            axes.append(a % nd)
        if len(set(axes)) != len(axes):
            raise ModelError(f"LayerNorm axes {self.axis} repeat an axis of a {nd}-d input")
        if 0 in axes:
            raise ModelError("LayerNorm cannot normalize over the batch axis 0")
        got = tuple(x.shape[a] for a in axes)
        if got != self.normalized_shape:
            raise ModelError(f"LayerNorm expects sizes {self.normalized_shape} on axes "
                             f"{self.axis}, got {got} (input shape {tuple(x.shape)})")
        return axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = self._resolve(x)
        nd, k = x.dim(), len(axes)
        if axes == list(range(nd - k, nd)):  # trailing axes in order: torch's fused kernel
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        xf = x.float() if _low_precision(x) else x  # statistics in fp32
        var, mean = torch.var_mean(xf, dim=axes, correction=0, keepdim=True)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None or self.bias is not None:
            # parameters are laid out in the order of `axis`; bring them into the tensor's
            # axis order, then give them x's rank: e.g. (C,) -> (1, C, 1, 1)
            order = sorted(range(k), key=axes.__getitem__)
            view = [1] * nd
            for a, s in zip(axes, self.normalized_shape):
                view[a] = s
            if self.weight is not None:
                y = y * self.weight.permute(order).reshape(view)
            if self.bias is not None:
                y = y + self.bias.permute(order).reshape(view)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, axis={self.axis}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class LayerNorm2d(nn.LayerNorm):
    """Channel-wise layer norm of (B, C, H, W) maps, as in ConvNeXt (Liu et al. 2022).

    Normalizes the C values at each pixel separately, with a (C,) scale and offset:
    ``LayerNorm(C, axis=1)``, but with torch's fused kernel. Usable as ``norm_layer(C)``.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True):
        super().__init__(num_channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ModelError(f"LayerNorm2d needs an input (B, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class LayerNormCHW(nn.GroupNorm):
    """Layer norm of a conv net as in Ba et al. 2016 and Wu & He 2018: statistics over
    (C, H, W) of each sample, with a per-channel (C,) scale and offset.

    This is GroupNorm with one group; the factory's ``"ln"``. It differs from
    ``LayerNorm((C, H, W), axis=(1, 2, 3))`` only in the affine part (C instead of C*H*W
    parameters), which keeps it a ``norm_layer(C)`` independent of the input size.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__(1, num_channels, eps=eps, affine=affine)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.affine}"


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` taking ``num_channels`` first, so it is a ``norm_layer(C)``.

    ``num_groups`` defaults to :func:`default_groups` (32 for C >= 64, fewer for small C).
    """

    def __init__(self, num_channels: int, num_groups: int | None = None, eps: float = 1e-5,
                 affine: bool = True):
        groups = default_groups(num_channels) if num_groups is None else int(num_groups)
        if groups < 1 or num_channels % groups:
            raise ModelError(f"GroupNorm needs num_groups dividing num_channels={num_channels}, "
                             f"got {num_groups}")
        super().__init__(groups, num_channels, eps=eps, affine=affine)


class InstanceNorm(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` with a learnable per-channel scale and offset by default
    (statistics over (H, W) of each sample and channel; Ulyanov et al. 2016)."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 track_running_stats: bool = False):
        super().__init__(num_channels, eps=eps, affine=affine,
                         track_running_stats=track_running_stats)


def standardize_weight(w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Weight standardization: each output filter w[o] (in, kh, kw) to zero mean and unit
    (biased) variance, ``(w - mean) / sqrt(var + eps)``."""
    var, mean = torch.var_mean(w, dim=tuple(range(1, w.dim())), correction=0, keepdim=True)
    return (w - mean) * torch.rsqrt(var + eps)


class WSConv2d(Conv2d):
    """Weight-standardized convolution (Qiao et al. 2019, "Micro-Batch Training with
    Batch-Channel Normalization and Weight Standardization").

    The kernel used in each forward pass is :func:`standardize_weight` of the stored
    weight, so its gradients flow through the standardization. Takes nn.Conv2d's
    arguments plus ``eps``. Meant to be followed by a norm layer (``gn``, ``bcn``).
    """

    def __init__(self, *args, eps: float = 1e-5, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, standardize_weight(self.weight, self.eps), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}"


class EstimatedBatchNorm2d(nn.Module):
    """Batch norm that normalizes with its running estimates in training too.

    In training the batch statistics only update the estimates (no gradient flows through
    them), which keeps normalization stable for micro-batches of one or two samples: the
    "estimated" batch part of BCN (Qiao et al. 2019). At inference it is plain BN.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, float(eps), float(momentum)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                dims = [0, *range(2, x.dim())]  # all but C
                var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(var.to(self.running_var.dtype), self.momentum)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchChannelNorm(nn.Module):
    """Batch-channel normalization (Qiao et al. 2019): batch norm, then a channel (group)
    norm of its output; each with its own per-channel scale and offset.

    The batch part brings in dataset-level statistics, the channel part keeps every sample
    normalized even when the batch statistics are poor. ``estimate=True`` uses
    :class:`EstimatedBatchNorm2d` for the batch part (the paper's micro-batch variant);
    otherwise ``nn.BatchNorm2d`` (the large-batch variant, which ``precise_bn`` also
    updates). The official code applies the channel part's affine per group; here it is per
    channel, as in ``nn.GroupNorm``. Usable as ``norm_layer(C)``; pair with ``WSConv2d``.
    """

    def __init__(self, num_channels: int, num_groups: int | None = None, eps: float = 1e-5,
                 momentum: float = 0.1, estimate: bool = False):
        super().__init__()
        groups = default_groups(num_channels) if num_groups is None else int(num_groups)
        if groups < 1 or num_channels % groups:
            raise ModelError(f"BatchChannelNorm needs num_groups dividing "
                             f"num_channels={num_channels}, got {num_groups}")
        self.num_channels, self.num_groups, self.eps = num_channels, groups, float(eps)
        self.bn = (EstimatedBatchNorm2d(num_channels, eps, momentum) if estimate
                   else nn.BatchNorm2d(num_channels, eps=eps, momentum=momentum))
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(x)  # (B, C, H, W), over (B, H, W) per channel
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, num_groups={self.num_groups}, eps={self.eps}"


__all__ = [
    "BatchChannelNorm", "EstimatedBatchNorm2d", "GroupNorm", "InstanceNorm", "LayerNorm",
    "LayerNorm2d", "LayerNormCHW", "WSConv2d", "default_groups", "standardize_weight",
]
