"""MobileNet v1 and v2: depthwise-separable convolutions and inverted residuals.

- ``mobilenet_v1`` (Howard et al. 2017): a 3x3 stride-2 convolution, then 13 depthwise
  separable layers (depthwise 3x3 + pointwise 1x1, each with norm and ReLU), global
  pooling and a linear layer; 4,231,976 parameters at 1000 classes with batch norm
  (the paper's 4.2M; the figure of osmr/imgclsmob's ``mobilenet_w1``).
- ``mobilenet_v2`` (Sandler et al. 2018): inverted residual bottlenecks (1x1 expansion by
  t, depthwise 3x3, linear 1x1 projection; identity shortcut when the shape allows), a
  1280-channel 1x1 head, dropout 0.2; 3,504,872 parameters at 1000 classes (torchvision).

Both are rows of ``MOBILENETS``, built by :func:`build_mobilenet` from the paper's layer
table. ``width_mult`` scales every layer's channels (rounded to multiples of 8; v2 keeps
at least 1280 head channels). ``stem="cifar"`` (or ``"auto"`` with ``input_size <= 64``)
removes the first two stride-2 steps (the stem's and the first strided block's), so a
32x32 image ends at 4x4 instead of 1x1 (as kuangliu/pytorch-cifar's MobileNetV2).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.blocks import (
    ConvNormAct,
    DepthwiseSeparable,
    InvertedResidual,
    init_weights,
    make_divisible,
)
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.models.registry import ImageClassifier, Variant, register_family, resolve_stem

# (pointwise filters, stride) of the 13 depthwise-separable layers: the paper's table 1
V1_CFG: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]
# (expansion t, filters c, repeats n, first stride s): the paper's table 2
V2_CFG: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


def _check_width(width_mult: float) -> None:
    if not width_mult > 0:
        raise ModelError(f"width_mult must be > 0, got {width_mult}")


class MobileNetV1(ImageClassifier):
    """(B, C, 224, 224) -> conv 3x3/2 (32) -> 13 separable layers (``cfg``) ->
    (B, 1024, 7, 7) -> GAP -> [dropout] -> linear."""

    def __init__(self, *, cfg: list[tuple[int, int]] = V1_CFG, num_classes: int = 1000,
                 in_chans: int = 3, width_mult: float = 1.0, norm_layer=nn.BatchNorm2d,
                 act_layer=nn.ReLU, stem: str = "imagenet", drop_rate: float = 0.0):
        super().__init__(num_classes, in_chans, min_input=1)  # padded convs take any size
        _check_width(width_mult)
        self.stem = stem
        small = stem == "cifar"
        c = make_divisible(32 * width_mult)
        self.stem_layers = ConvNormAct(in_chans, c, 3, 1 if small else 2, norm_layer=norm_layer,
                                       act_layer=act_layer)
        layers, first_strided = [], True
        for filters, stride in cfg:
            if small and stride == 2 and first_strided:
                stride, first_strided = 1, False  # drop the first downsampling too
            c_out = make_divisible(filters * width_mult)
            layers.append(DepthwiseSeparable(c, c_out, stride, norm_layer=norm_layer,
                                             act_layer=act_layer))
            c = c_out
        self.blocks = nn.Sequential(*layers)
        self.num_features = c
        self._set_head(c, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem_layers(x))  # (B, 1024 * width, H/32, W/32)


class MobileNetV2(ImageClassifier):
    """(B, C, 224, 224) -> conv 3x3/2 (32) -> 17 inverted residuals (``cfg``) -> 1x1 conv
    (1280) -> (B, 1280, 7, 7) -> GAP -> dropout -> linear."""

    def __init__(self, *, cfg: list[tuple[int, int, int, int]] = V2_CFG,
                 num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0,
                 norm_layer=nn.BatchNorm2d, act_layer=nn.ReLU6, stem: str = "imagenet",
                 drop_rate: float = 0.2):
        super().__init__(num_classes, in_chans, min_input=1)
        _check_width(width_mult)
        self.stem = stem
        small = stem == "cifar"
        c = make_divisible(32 * width_mult)
        self.stem_layers = ConvNormAct(in_chans, c, 3, 1 if small else 2, norm_layer=norm_layer,
                                       act_layer=act_layer)
        layers, first_strided = [], True
        for t, filters, n, s in cfg:
            c_out = make_divisible(filters * width_mult)
            for i in range(n):
                stride = s if i == 0 else 1
                if small and stride == 2 and first_strided:
                    stride, first_strided = 1, False
                layers.append(InvertedResidual(c, c_out, stride, expand_ratio=t,
                                               norm_layer=norm_layer, act_layer=act_layer))
                c = c_out
        last = make_divisible(1280 * max(1.0, width_mult))
        layers.append(ConvNormAct(c, last, 1, norm_layer=norm_layer, act_layer=act_layer))
        self.blocks = nn.Sequential(*layers)
        self.num_features = last
        self._set_head(last, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem_layers(x))  # (B, 1280, H/32, W/32)


def build_mobilenet(*, variant: str, arch: type[MobileNetV1 | MobileNetV2], cfg: list,
                    num_classes: int = 1000, in_chans: int = 3, norm: str = "bn",
                    act: str = "relu", stem: str = "auto", input_size: int | None = None,
                    width_mult: float = 1.0, drop_rate: float = 0.0) -> nn.Module:
    """A MobileNet of version ``arch`` with the layer table ``cfg``; ``width_mult`` scales
    its channels (the paper's width multiplier alpha)."""
    return arch(cfg=cfg, num_classes=num_classes, in_chans=in_chans, width_mult=width_mult,
                norm_layer=get_norm_layer(norm), act_layer=get_act_layer(act),
                stem=resolve_stem(stem, input_size, variant), drop_rate=drop_rate)


MOBILENETS: dict[str, Variant] = {
    "mobilenet_v1": Variant(
        dict(arch=MobileNetV1, cfg=V1_CFG),
        "MobileNet v1 (depthwise separable convolutions; width multiplier alpha; 4,231,976 "
        "parameters at 1000 classes).",
        paper="Howard et al., MobileNets: Efficient CNNs for Mobile Vision Applications, "
              "arXiv:1704.04861 (2017)"),
    "mobilenet_v2": Variant(
        dict(arch=MobileNetV2, cfg=V2_CFG),
        "MobileNet v2 (inverted residuals, linear bottlenecks; width multiplier; 3,504,872 "
        "parameters at 1000 classes).",
        paper="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, "
              "CVPR 2018", defaults=dict(act="relu6", drop_rate=0.2)),
}
register_family(build_mobilenet, MOBILENETS, family="mobilenet")
