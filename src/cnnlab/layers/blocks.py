"""Building blocks shared by the model families (torch only).

Every block takes layer *types* (``norm_layer=nn.BatchNorm2d``, ``act_layer=nn.ReLU``);
``norm_layer=None`` means no normalization (convolutions then get a bias). Blocks used by
more than one family live here once:

    ConvNormAct           conv -> norm -> act: every family's stem and most of its layers
    BasicBlock            two 3x3 convs + shortcut (ResNet-18/34, CIFAR ResNets)
    Bottleneck            1x1 -> 3x3 (grouped) -> 1x1 + shortcut (ResNet-50+, ResNeXt)
    PreActBasicBlock      norm-act-conv twice, shortcut from the pre-activation
                          (pre-activation ResNet, Wide ResNet)
    PadShortcut           ResNet's parameter-free option-A shortcut (CIFAR ResNets)
    DepthwiseSeparable    depthwise 3x3 + pointwise 1x1 (MobileNet v1)
    InvertedResidual      expand 1x1 -> depthwise kxk -> [SE] -> project 1x1 (MobileNet v2,
                          EfficientNet's MBConv)
    SqueezeExcite         channel gating (EfficientNet)
    ConvNeXtBlock         depthwise 7x7 -> norm -> MLP -> layer scale (ConvNeXt)
    InceptionModule       four parallel branches, concatenated (GoogLeNet)
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.conv import Conv2d
from cnnlab.layers.drop import DropPath
from cnnlab.layers.residual import projection_shortcut

NormLayer = Callable[[int], nn.Module] | None
ActLayer = Callable[..., nn.Module] | None


def make_act(act_layer: ActLayer, inplace: bool = True) -> nn.Module:
    """Instantiate an activation type, in place when it supports it (saves memory);
    None gives the identity."""
    if act_layer is None:
        return nn.Identity()
    try:
        params = inspect.signature(act_layer).parameters
    except (TypeError, ValueError):  # some builtins / partials have no signature
        params = {}
    if inplace and "inplace" in params:
        return act_layer(inplace=True)
    return act_layer()


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` without going more
    than 10% below ``value`` (the rule of the MobileNet / EfficientNet reference code)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < round_limit * value:
        new += divisor
    return new


class ConvNormAct(nn.Sequential):
    """(B, c_in, H, W) -> conv(k, stride) -> norm -> act -> (B, c_out, H / stride, W / stride).

    ``padding`` defaults to "same"-style ``(k - 1) // 2 * dilation``; the conv has a bias
    only when there is no norm (unless ``bias`` says otherwise: VGG keeps it).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        bias: bool | None = None,
    ):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = Conv2d(c_in, c_out, kernel_size, stride, padding, dilation=dilation,
                                groups=groups, bias=bias)
        if norm_layer is not None:
            layers["norm"] = norm_layer(c_out)
        if act_layer is not None:
            layers["act"] = make_act(act_layer)
        super().__init__(layers)


def make_norm(norm_layer: NormLayer, channels: int) -> nn.Module:
    """Instantiate a norm type for ``channels``; None gives the identity."""
    return norm_layer(channels) if norm_layer is not None else nn.Identity()


def _drop_path(p: float) -> nn.Module:
    return DropPath(p) if p > 0 else nn.Identity()


def _check_basic(block: str, groups: int, base_width: int) -> None:
    if groups != 1 or base_width != 64:
        raise ModelError(f"{block} takes groups=1 and base_width=64 (grouped and wide "
                         f"variants need bottleneck blocks), got groups={groups}, "
                         f"base_width={base_width}")


# ---------------------------------------------------------------------------------------
# residual blocks (He et al. 2016; Xie et al. 2017; He et al. 2016b; Zagoruyko & Komodakis)


class PadShortcut(nn.Module):
    """ResNet's option-A shortcut (He et al. 2016, sec. 4.2): subsample by ``stride`` and
    pad the extra channels with zeros; it has no parameters.

    (B, c_in, H, W) -> (B, c_out, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        if c_out < c_in:
            raise ValueError(f"PadShortcut cannot reduce channels ({c_in} -> {c_out})")
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.c_out - self.c_in
        if extra:
            # split the new channels on both sides, as the reference Torch implementation
            x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))
        return x

    def extra_repr(self) -> str:
        return f"{self.c_in}, {self.c_out}, stride={self.stride}"


def make_shortcut(kind: str, c_in: int, c_out: int, stride: int,
                  norm_layer: NormLayer) -> nn.Module | None:
    """The shortcut of a residual block whose shape changes; None where it does not.

    kind: "A" (zero-padding, no parameters), "B" (1x1 conv + norm where the shape
    changes), "C" (1x1 conv + norm on every block).
    """
    if kind == "C" or ((stride != 1 or c_in != c_out) and kind == "B"):
        return projection_shortcut(c_in, c_out, stride, norm_layer)
    if stride != 1 or c_in != c_out:
        return PadShortcut(c_in, c_out, stride)
    return None


class BasicBlock(nn.Module):
    """Two 3x3 conv-norm layers plus a shortcut, ReLU after the sum (ResNet-18/34).

    (B, c_in, H, W) -> (B, width, H / stride, W / stride); ``expansion`` = 1.
    """

    expansion = 1

    def __init__(
        self,
        c_in: int,
        width: int,
        stride: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        shortcut: nn.Module | None = None,
        drop_path: float = 0.0,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        _check_basic("BasicBlock", groups, base_width)
        self.conv1 = ConvNormAct(c_in, width, 3, stride, norm_layer=norm_layer,
                                 act_layer=act_layer)
        self.conv2 = ConvNormAct(width, width, 3, norm_layer=norm_layer, act_layer=None)
        self.shortcut = shortcut
        self.drop_path = _drop_path(drop_path)
        self.act = make_act(act_layer)

    def last_norm(self) -> nn.Module | None:
        """The norm closing the branch (zero-initialising it starts the block as identity)."""
        return getattr(self.conv2, "norm", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.conv2(self.conv1(x))
        return self.act(self.drop_path(out) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, ``groups``) -> 1x1 expand, plus a shortcut (ResNet-50+).

    (B, c_in, H, W) -> (B, 4 * width, H / stride, W / stride). The stride sits on the 3x3
    convolution ("ResNet v1.5", as torchvision). ResNeXt: ``groups`` = cardinality and
    ``base_width`` the width per group, so the inner width is
    ``int(width * base_width / 64) * groups`` (Xie et al. 2017).
    """

    expansion = 4

    def __init__(
        self,
        c_in: int,
        width: int,
        stride: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        shortcut: nn.Module | None = None,
        drop_path: float = 0.0,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        inner = int(width * (base_width / 64.0)) * groups
        c_out = width * self.expansion
        self.conv1 = ConvNormAct(c_in, inner, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(inner, inner, 3, stride, groups=groups, norm_layer=norm_layer,
                                 act_layer=act_layer)
        self.conv3 = ConvNormAct(inner, c_out, 1, norm_layer=norm_layer, act_layer=None)
        self.shortcut = shortcut
        self.drop_path = _drop_path(drop_path)
        self.act = make_act(act_layer)

    def last_norm(self) -> nn.Module | None:
        return getattr(self.conv3, "norm", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.act(self.drop_path(out) + identity)


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: norm-act-conv3x3, norm-act-[dropout]-conv3x3, plus a
    shortcut that, when it must change the shape, takes the pre-activated input
    (He et al. 2016b, "Identity Mappings in Deep Residual Networks"; with ``dropout``,
    the Wide ResNet block of Zagoruyko & Komodakis 2016).

    (B, c_in, H, W) -> (B, width, H / stride, W / stride); no activation after the sum.
    A network of these blocks has a bare first convolution and a final norm-act
    (``preact``).
    """

    expansion = 1
    preact = True

    def __init__(
        self,
        c_in: int,
        width: int,
        stride: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        shortcut: nn.Module | None = None,
        drop_path: float = 0.0,
        dropout: float = 0.0,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        _check_basic("PreActBasicBlock", groups, base_width)
        bias = norm_layer is None
        self.norm1 = make_norm(norm_layer, c_in)
        self.act1 = make_act(act_layer)
        self.conv1 = Conv2d(c_in, width, 3, stride, 1, bias=bias)
        self.norm2 = make_norm(norm_layer, width)
        self.act2 = make_act(act_layer)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = Conv2d(width, width, 3, 1, 1, bias=bias)
        self.shortcut = shortcut
        self.drop_path = _drop_path(drop_path)

    def last_norm(self) -> nn.Module | None:
        return None  # the branch ends in a convolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.norm1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(self.act2(self.norm2(out))))
        return self.drop_path(out) + identity


# ---------------------------------------------------------------------------------------
# mobile blocks (Howard et al. 2017; Sandler et al. 2018; Tan & Le 2019; Hu et al. 2018)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): global pool -> 1x1 reduce -> act -> 1x1
    expand -> sigmoid gate, multiplied onto the input. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, rd_channels: int, act_layer: ActLayer = nn.ReLU,
                 gate_layer: Callable[[], nn.Module] = nn.Sigmoid):
        super().__init__()
        self.reduce = nn.Conv2d(channels, rd_channels, 1)
        self.act = make_act(act_layer)
        self.expand = nn.Conv2d(rd_channels, channels, 1)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        s = self.expand(self.act(self.reduce(s)))
        return x * self.gate(s)


class DepthwiseSeparable(nn.Module):
    """Depthwise kxk conv-norm-act then pointwise 1x1 conv-norm-act (MobileNet v1).

    (B, c_in, H, W) -> (B, c_out, H / stride, W / stride).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel_size: int = 3,
                 norm_layer: NormLayer = nn.BatchNorm2d, act_layer: ActLayer = nn.ReLU):
        super().__init__()
        self.dw = ConvNormAct(c_in, c_in, kernel_size, stride, groups=c_in,
                              norm_layer=norm_layer, act_layer=act_layer)
        self.pw = ConvNormAct(c_in, c_out, 1, norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class InvertedResidual(nn.Module):
    """Inverted residual / MBConv: 1x1 expand (by ``expand_ratio``; skipped when it is 1)
    -> depthwise kxk (stride) -> optional squeeze-excitation -> 1x1 linear projection,
    with an identity shortcut when stride is 1 and channels match
    (Sandler et al. 2018; Tan & Le 2019 with ``se_ratio`` = 0.25 and stochastic depth).

    (B, c_in, H, W) -> (B, c_out, H / stride, W / stride). The SE bottleneck is
    ``max(1, int(c_in * se_ratio))`` channels: relative to the block's *input*, as in the
    reference EfficientNet.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int = 1,
        expand_ratio: float = 6.0,
        kernel_size: int = 3,
        se_ratio: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU6,
        drop_path: float = 0.0,
    ):
        super().__init__()
        hidden = int(round(c_in * expand_ratio)) if expand_ratio != 1 else c_in
        self.use_residual = stride == 1 and c_in == c_out
        self.expand = (ConvNormAct(c_in, hidden, 1, norm_layer=norm_layer, act_layer=act_layer)
                       if hidden != c_in else nn.Identity())
        self.dw = ConvNormAct(hidden, hidden, kernel_size, stride, groups=hidden,
                              norm_layer=norm_layer, act_layer=act_layer)
        self.se = (SqueezeExcite(hidden, max(1, int(c_in * se_ratio)), act_layer)
                   if se_ratio > 0 else nn.Identity())
        self.project = ConvNormAct(hidden, c_out, 1, norm_layer=norm_layer, act_layer=None)
        self.drop_path = _drop_path(drop_path) if self.use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        if self.use_residual:
            out = self.drop_path(out) + x
        return out


# ---------------------------------------------------------------------------------------
# ConvNeXt (Liu et al. 2022) and Inception (Szegedy et al. 2015)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 -> norm -> 1x1 expand (x4) -> GELU -> 1x1 project -> layer scale,
    plus the identity (Liu et al. 2022, "A ConvNet for the 2020s").

    (B, C, H, W) -> (B, C, H, W). The norm runs channels-first on (B, C, H, W) (the
    factory's "ln2d" is ConvNeXt's channel-wise LayerNorm); the MLP runs channels-last as
    two ``nn.Linear`` layers, which equal 1x1 convolutions.
    """

    def __init__(
        self,
        dim: int,
        drop_path: float = 0.0,
        layer_scale_init: float = 1e-6,
        norm_layer: NormLayer = None,
        act_layer: ActLayer = nn.GELU,
        kernel_size: int = 7,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = make_norm(norm_layer, dim)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = make_act(act_layer)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)
        self.layer_scale = (nn.Parameter(torch.full((dim,), layer_scale_init))
                            if layer_scale_init > 0 else None)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.dwconv(x))
        out = out.permute(0, 2, 3, 1)  # (B, H, W, C)
        out = self.fc2(self.act(self.fc1(out)))
        if self.layer_scale is not None:
            out = out * self.layer_scale
        out = out.permute(0, 3, 1, 2)  # (B, C, H, W)
        return x + self.drop_path(out)


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels (GoogLeNet, Szegedy et al. 2015):
    1x1 | 1x1 -> 3x3 | 1x1 -> kxk | 3x3 max-pool -> 1x1.

    (B, c_in, H, W) -> (B, c1 + c3 + c5 + pool_proj, H, W). ``c5_kernel`` is 5 in the paper;
    torchvision (and its pretrained weights) use 3 there, which gives its parameter count.
    """

    def __init__(self, c_in: int, c1: int, c3_red: int, c3: int, c5_red: int, c5: int,
                 pool_proj: int, norm_layer: NormLayer = nn.BatchNorm2d,
                 act_layer: ActLayer = nn.ReLU, c5_kernel: int = 3):
        super().__init__()

        def cna(a: int, b: int, k: int) -> ConvNormAct:
            return ConvNormAct(a, b, k, norm_layer=norm_layer, act_layer=act_layer)

        self.branch1 = cna(c_in, c1, 1)
        self.branch2 = nn.Sequential(cna(c_in, c3_red, 1), cna(c3_red, c3, 3))
        self.branch3 = nn.Sequential(cna(c_in, c5_red, 1), cna(c5_red, c5, c5_kernel))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                     cna(c_in, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], 1)


def init_weights(model: nn.Module, linear_std: float | None = None) -> None:
    """He-normal (fan-out) conv weights, zero biases, unit/zero norm affine; linear layers
    keep torch's default unless ``linear_std`` is given (then N(0, linear_std)).

    A model built on the meta device (shapes only, for cards) is left alone: random init
    there is pointless and slow."""
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm | nn.LayerNorm):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


__all__ = [
    "BasicBlock", "Bottleneck", "ConvNeXtBlock", "ConvNormAct", "DepthwiseSeparable",
    "InceptionModule", "InvertedResidual", "PadShortcut", "PreActBasicBlock", "SqueezeExcite",
    "init_weights", "make_act", "make_divisible", "make_norm", "make_shortcut",
]
