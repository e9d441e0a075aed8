"""ResNet family: residual networks for ImageNet and CIFAR, ResNeXt, pre-activation and wide.

Three family builders, each registering the rows of its table (``RESNETS``,
``CIFAR_RESNETS``, ``WIDE_RESNETS``; every row's card gives its parameter count):

- :func:`build_resnet`, the ImageNet networks. ``resnet18/34/50/101/152`` (He et al. 2016,
  "Deep Residual Learning for Image Recognition"): basic blocks (18, 34) or bottlenecks
  (50+), 1x1 projection shortcuts where the shape changes (option B), stride on the
  bottleneck's 3x3 ("v1.5", as torchvision); parameter counts equal torchvision's
  (resnet18: 11,689,512). ``resnext50_32x4d``, ``resnext101_32x8d`` (Xie et al. 2017):
  grouped bottlenecks. ``wide_resnet50_2`` (Zagoruyko & Komodakis 2016, torchvision's
  ImageNet variant): bottlenecks twice as wide inside. ``preact_resnet18`` (He et al.
  2016b, "Identity Mappings in Deep Residual Networks"): norm-act before each convolution,
  a final norm-act before pooling.
- :func:`build_cifar_resnet`, ``resnet20/32/44/56/110``: the CIFAR networks of He et al.
  2016, sec. 4.2: a 3x3 stem of 16 filters, three stages of n basic blocks at 16/32/64
  filters (depth 6n + 2), global pooling and one linear layer. Their shortcuts are option A
  by default (identity, with zero-padded extra channels when the width doubles), as the
  paper used on CIFAR: this is what gives ResNet-20 its 0.27M parameters (269,722 at 10
  classes); ``shortcut="B"`` uses 1x1 projections instead (272,474).
- :func:`build_wide_resnet`, ``wide_resnet28_10`` (Zagoruyko & Komodakis 2016, "Wide
  Residual Networks"): CIFAR pre-activation network of depth 28 and widening factor 10
  (160/320/640 filters), optional dropout between the convolutions.

The ImageNet networks take ``stem="cifar"`` (or ``"auto"`` with ``input_size <= 64``): a
3x3 stride-1 first convolution and no max-pool, so a 32x32 image reaches the last stage at
4x4 rather than 1x1 (the usual CIFAR adaptation, e.g. kuangliu/pytorch-cifar).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.blocks import (
    BasicBlock,
    Bottleneck,
    ConvNormAct,
    PreActBasicBlock,
    init_weights,
    make_act,
    make_norm,
    make_shortcut,
)
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.models.registry import ImageClassifier, Variant, register_family, resolve_stem

_HE = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
_HE_PREACT = "He et al., Identity Mappings in Deep Residual Networks, ECCV 2016"
_XIE = "Xie et al., Aggregated Residual Transformations (ResNeXt), CVPR 2017"
_WRN = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016"

SHORTCUTS = ("A", "B", "C")


class ResNet(ImageClassifier):
    """A stem, stages of residual blocks (the first block of each stage after the first
    halves the resolution), a final norm-act for pre-activation blocks (``block.preact``),
    global average pooling and a linear classifier.

    (B, in_chans, H, W) -> stem -> (B, stem_width, H/s, W/s) -> stages ->
    (B, widths[-1] * block.expansion, H/(s*2**(len(widths)-1)), ...) -> (B, num_classes),
    with s = 4 for the ImageNet stem (stride-2 conv + max-pool) and 1 for the CIFAR stem.
    ``block_kwargs`` go to every block (``groups``, ``base_width``, ``dropout``).
    """

    def __init__(
        self,
        *,
        block: type[nn.Module],
        layers: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        stem_width: int = 64,
        norm_layer=nn.BatchNorm2d,
        act_layer=nn.ReLU,
        shortcut: str = "B",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_residual: bool = False,
        **block_kwargs,
    ):
        super().__init__(num_classes, in_chans, min_input=1)  # padded convs: any size works
        if shortcut not in SHORTCUTS:
            raise ModelError(f"shortcut must be 'A' (zero-padding identity), 'B' (projection "
                             f"where the shape changes) or 'C' (always), got {shortcut!r}")
        if len(layers) != len(widths) or min(layers) < 1:
            raise ModelError(f"ResNet needs one block count >= 1 per stage width, got layers="
                             f"{tuple(layers)} for widths={tuple(widths)}")
        self.stem = stem
        preact = getattr(block, "preact", False)
        # pre-activation nets normalize at the start of each block, so the stem is a bare conv
        stem_norm, stem_act = (None, None) if preact else (norm_layer, act_layer)
        stem_bias = False if preact else None
        if stem == "imagenet":
            self.stem_layers = nn.Sequential(
                ConvNormAct(in_chans, stem_width, 7, 2, norm_layer=stem_norm, act_layer=stem_act,
                            bias=stem_bias),
                nn.MaxPool2d(3, 2, 1),
            )
        else:
            self.stem_layers = ConvNormAct(in_chans, stem_width, 3, 1, norm_layer=stem_norm,
                                           act_layer=stem_act, bias=stem_bias)

        total, done = sum(layers), 0
        stages, c_in = [], stem_width
        for i, (width, n) in enumerate(zip(widths, layers)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                c_out = width * block.expansion
                if preact:  # the shortcut takes the pre-activation: a bare 1x1 projection
                    sc = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                          if stride != 1 or c_in != c_out else None)
                else:
                    sc = make_shortcut(shortcut, c_in, c_out, stride, norm_layer)
                dp = drop_path_rate * done / max(total - 1, 1)  # linear in depth
                blocks.append(block(c_in, width, stride, norm_layer=norm_layer,
                                    act_layer=act_layer, shortcut=sc, drop_path=dp,
                                    **block_kwargs))
                c_in, done = c_out, done + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final_norm = (nn.Sequential(make_norm(norm_layer, c_in), make_act(act_layer))
                           if preact else nn.Identity())
        self.num_features = c_in
        self._set_head(c_in, num_classes, drop_rate)
        init_weights(self)
        if zero_init_residual:  # each block starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                norm = m.last_norm() if hasattr(m, "last_norm") else None
                if norm is not None and getattr(norm, "weight", None) is not None:
                    nn.init.zeros_(norm.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_layers(x)  # (B, stem_width, H/s, W/s)
        return self.final_norm(self.stages(x))  # (B, num_features, h, w)


# --- ImageNet ResNets, ResNeXts, wide and pre-activation ResNets -------------------------


def build_resnet(*, variant: str, block: type[nn.Module], layers: Sequence[int],
                 num_classes: int = 1000, in_chans: int = 3, norm: str = "bn",
                 act: str = "relu", stem: str = "auto", input_size: int | None = None,
                 shortcut: str = "B", groups: int = 1, base_width: int = 64,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 zero_init_residual: bool = False) -> ResNet:
    """An ImageNet ResNet: 64-128-256-512 stages of ``layers`` blocks behind a 64-filter
    stem; ``groups`` and ``base_width`` (bottlenecks only) make it a ResNeXt or wide."""
    return ResNet(block=block, layers=layers, num_classes=num_classes, in_chans=in_chans,
                  stem=resolve_stem(stem, input_size, variant),
                  norm_layer=get_norm_layer(norm), act_layer=get_act_layer(act),
                  shortcut=shortcut, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
                  zero_init_residual=zero_init_residual, groups=groups, base_width=base_width)


RESNETS: dict[str, Variant] = {
    "resnet18": Variant(
        dict(block=BasicBlock, layers=(2, 2, 2, 2)),
        "ResNet-18: basic blocks 2-2-2-2 (11,689,512 parameters at 1000 classes)."),
    "resnet26": Variant(
        dict(block=Bottleneck, layers=(2, 2, 2, 2)),
        "ResNet-26 (timm): bottlenecks 2-2-2-2 (15,995,176 parameters at 1000 classes)."),
    "resnet34": Variant(
        dict(block=BasicBlock, layers=(3, 4, 6, 3)),
        "ResNet-34: basic blocks 3-4-6-3 (21,797,672 parameters at 1000 classes)."),
    "resnet50": Variant(
        dict(block=Bottleneck, layers=(3, 4, 6, 3)),
        "ResNet-50: bottlenecks 3-4-6-3 (25,557,032 parameters at 1000 classes)."),
    "resnet101": Variant(
        dict(block=Bottleneck, layers=(3, 4, 23, 3)),
        "ResNet-101: bottlenecks 3-4-23-3 (44,549,160 parameters at 1000 classes)."),
    "resnet152": Variant(
        dict(block=Bottleneck, layers=(3, 8, 36, 3)),
        "ResNet-152: bottlenecks 3-8-36-3 (60,192,808 parameters at 1000 classes)."),
    "resnext50_32x4d": Variant(
        dict(block=Bottleneck, layers=(3, 4, 6, 3), groups=32, base_width=4),
        "ResNeXt-50 32x4d: 32 groups of 4 channels in the first stage's 3x3 (25,028,904 "
        "parameters at 1000 classes).", family="resnext", paper=_XIE),
    "resnext101_32x8d": Variant(
        dict(block=Bottleneck, layers=(3, 4, 23, 3), groups=32, base_width=8),
        "ResNeXt-101 32x8d (88,791,336 parameters at 1000 classes).",
        family="resnext", paper=_XIE),
    "wide_resnet50_2": Variant(
        dict(block=Bottleneck, layers=(3, 4, 6, 3), base_width=128),
        "Wide ResNet-50-2, torchvision's ImageNet variant: ResNet-50 with bottlenecks twice "
        "as wide inside (68,883,240 parameters at 1000 classes).",
        family="wide_resnet", paper=_WRN),
    # the pre-activation shortcut is always a projection, and no norm closes its branch
    "preact_resnet18": Variant(
        dict(block=PreActBasicBlock, layers=(2, 2, 2, 2), shortcut="B",
             zero_init_residual=False),
        "Pre-activation ResNet-18: norm-act-conv units, 1x1 projection shortcuts taken from "
        "the pre-activation, final norm-act; at 32x32 (stem \"cifar\") the common CIFAR "
        "network (11,687,720 parameters at 1000 classes).", paper=_HE_PREACT),
}
register_family(build_resnet, RESNETS, family="resnet", default_input=224, paper=_HE)


# --- CIFAR ResNets (He et al. 2016, sec. 4.2) and Wide ResNets ----------------------------


def build_cifar_resnet(*, variant: str, depth: int, num_classes: int = 10, in_chans: int = 3,
                       norm: str = "bn", act: str = "relu", stem: str = "auto",
                       input_size: int | None = None, shortcut: str = "A", width: int = 16,
                       drop_path_rate: float = 0.0,
                       zero_init_residual: bool = False) -> ResNet:
    """A CIFAR ResNet of ``depth`` = 6n + 2: 3 stages of n basic blocks at ``width``, 2x, 4x
    filters."""
    if depth < 8 or (depth - 2) % 6:
        raise ModelError(f"{variant}: a CIFAR ResNet has depth 6n + 2 (20, 32, ...), got {depth}")
    n = (depth - 2) // 6
    resolve_stem(stem, input_size, variant, native="cifar")  # validates the value
    return ResNet(block=BasicBlock, layers=(n, n, n), widths=(width, 2 * width, 4 * width),
                  num_classes=num_classes, in_chans=in_chans, stem="cifar", stem_width=width,
                  norm_layer=get_norm_layer(norm), act_layer=get_act_layer(act),
                  shortcut=shortcut, drop_path_rate=drop_path_rate,
                  zero_init_residual=zero_init_residual)


CIFAR_RESNETS: dict[str, Variant] = {
    "resnet20": Variant(
        dict(depth=20),
        "CIFAR ResNet-20: 3 stages of 3 basic blocks at width, 2x, 4x filters (16/32/64); "
        "option-A shortcuts by default (269,722 parameters at 10 classes)."),
    "resnet32": Variant(
        dict(depth=32),
        "CIFAR ResNet-32: 3 stages of 5 basic blocks at width, 2x, 4x filters (16/32/64); "
        "option-A shortcuts by default (464,154 parameters at 10 classes)."),
    "resnet44": Variant(
        dict(depth=44),
        "CIFAR ResNet-44: 3 stages of 7 basic blocks at width, 2x, 4x filters (16/32/64); "
        "option-A shortcuts by default (658,586 parameters at 10 classes)."),
    "resnet56": Variant(
        dict(depth=56),
        "CIFAR ResNet-56: 3 stages of 9 basic blocks at width, 2x, 4x filters (16/32/64); "
        "option-A shortcuts by default (853,018 parameters at 10 classes)."),
    "resnet110": Variant(
        dict(depth=110),
        "CIFAR ResNet-110: 3 stages of 18 basic blocks at width, 2x, 4x filters (16/32/64); "
        "option-A shortcuts by default (1,727,962 parameters at 10 classes)."),
}
register_family(build_cifar_resnet, CIFAR_RESNETS, family="resnet_cifar", default_input=32,
                paper=_HE)


def build_wide_resnet(*, variant: str, depth: int, widen_factor: int, num_classes: int = 10,
                      in_chans: int = 3, norm: str = "bn", act: str = "relu",
                      stem: str = "auto", input_size: int | None = None, dropout: float = 0.0,
                      drop_path_rate: float = 0.0) -> ResNet:
    """WRN-depth-k for CIFAR: pre-activation basic blocks, (depth - 4) / 6 per stage at
    16k/32k/64k filters behind a 16-filter stem, ``dropout`` between the convolutions."""
    if depth < 10 or (depth - 4) % 6:
        raise ModelError(f"{variant}: a Wide ResNet has depth 6n + 4 (16, 22, 28, ...), got "
                         f"{depth}")
    n = (depth - 4) // 6
    resolve_stem(stem, input_size, variant, native="cifar")
    k = widen_factor
    return ResNet(block=PreActBasicBlock, layers=(n, n, n), widths=(16 * k, 32 * k, 64 * k),
                  num_classes=num_classes, in_chans=in_chans, stem="cifar", stem_width=16,
                  norm_layer=get_norm_layer(norm), act_layer=get_act_layer(act),
                  drop_path_rate=drop_path_rate, dropout=dropout)


WIDE_RESNETS: dict[str, Variant] = {
    "wide_resnet28_10": Variant(
        dict(depth=28, widen_factor=10),
        "WRN-28-10: pre-activation basic blocks, 4 per stage at 160/320/640 filters, dropout "
        "between the two convolutions (the paper uses 0.3 on CIFAR), final norm-act "
        "(36,479,194 parameters at 10 classes)."),
}
register_family(build_wide_resnet, WIDE_RESNETS, family="wide_resnet", default_input=32,
                paper=_WRN)
