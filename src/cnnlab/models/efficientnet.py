"""EfficientNet-B0 to B7 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks").

B0 is seven stages of MBConv blocks (inverted residuals with squeeze-excitation at 0.25 of
the block input, SiLU, stochastic depth), a 3x3 stride-2 stem of 32 filters and a 1x1
head of 1280. Bn derives from B0 by the compound scaling rule (paper, eq. 3):

    depth d = alpha ** phi, width w = beta ** phi, resolution r = gamma ** phi,
    alpha = 1.2, beta = 1.1, gamma = 1.15  (alpha * beta**2 * gamma**2 ~ 2: FLOPs ~ 2**phi)

:func:`compound_scaling` computes those multipliers for any phi. The released B1..B7 use
rounded multipliers chosen by the authors (``EFFICIENTNET_PARAMS``, from the reference
code) - the numbers the reference weights and parameter counts come from - and
:func:`scaled_stages` applies them to B0's stage table with the reference rounding:
channels ``round_filters`` (nearest multiple of 8, never more than 10% down), repeats
``round_repeats`` (ceil). Parameter counts equal torchvision's: B0 5,288,548;
B1 7,794,184; B2 9,109,994; B3 12,233,232; B4 19,341,616; B5 30,389,784; B6 43,040,704;
B7 66,347,960 (1000 classes).

Every variant is a row of ``EFFICIENTNETS`` built by :func:`build_efficientnet`, whose
``width_mult``, ``depth_mult`` and ``resolution`` default to the row's released values and
take any others: ``create_model("efficientnet_b0", width_mult=1.2, depth_mult=1.4,
resolution=300)``, or with the rule, ``s = compound_scaling(2.5)`` then
``width_mult=s.width, depth_mult=s.depth, resolution=s.resolution``.

``stem="cifar"`` (or ``"auto"`` with ``input_size <= 64``): the stem convolution and the
first strided stage keep stride 1, so a 32x32 image ends at 4x4 instead of 1x1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.blocks import ConvNormAct, InvertedResidual, init_weights, make_divisible
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.models.registry import (
    ImageClassifier,
    Variant,
    input_side,
    register_family,
    resolve_stem,
)

_TAN = "Tan & Le, EfficientNet: Rethinking Model Scaling for CNNs, ICML 2019"

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # depth, width, resolution bases (paper, sec. 3.3)

# B0's stages (paper, table 1): (expand ratio, kernel, first stride, filters, repeats)
B0_STAGES: list[tuple[int, int, int, int, int]] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
B0_STEM = 32  # stem filters; the 1x1 head has 4x the last stage's (1280 for B0)


@dataclass(frozen=True)
class Scaling:
    """Multipliers of B0: channels x ``width``, repeats x ``depth``, input side
    ``resolution``; ``dropout`` before the classifier."""

    width: float
    depth: float
    resolution: int
    dropout: float = 0.2


# the released variants (reference code's efficientnet_params)
EFFICIENTNET_PARAMS: dict[int, Scaling] = {
    0: Scaling(1.0, 1.0, 224, 0.2),
    1: Scaling(1.0, 1.1, 240, 0.2),
    2: Scaling(1.1, 1.2, 260, 0.3),
    3: Scaling(1.2, 1.4, 300, 0.3),
    4: Scaling(1.4, 1.8, 380, 0.4),
    5: Scaling(1.6, 2.2, 456, 0.4),
    6: Scaling(1.8, 2.6, 528, 0.5),
    7: Scaling(2.0, 3.1, 600, 0.5),
}


def compound_scaling(phi: float, alpha: float = ALPHA, beta: float = BETA,
                     gamma: float = GAMMA, base_resolution: int = 224) -> Scaling:
    """The compound scaling rule: B0 scaled by ``phi`` -> (width, depth, resolution).

    ``compound_scaling(1)`` gives depth 1.2, width 1.1, resolution 258; the released
    models round these choices (see ``EFFICIENTNET_PARAMS``)."""
    if alpha < 1 or beta < 1 or gamma < 1:
        raise ModelError(f"compound scaling needs alpha, beta, gamma >= 1, got {alpha}, "
                         f"{beta}, {gamma}")
    return Scaling(width=beta**phi, depth=alpha**phi,
                   resolution=int(round(base_resolution * gamma**phi)))


def efficientnet_scaling(variant: int) -> Scaling:
    """The released multipliers of EfficientNet-B``variant`` (0..7)."""
    if variant not in EFFICIENTNET_PARAMS:
        raise ModelError(f"EfficientNet variants are B0..B7, got B{variant}")
    return EFFICIENTNET_PARAMS[variant]


def round_filters(filters: int, width: float) -> int:
    """Channels x width, to the nearest multiple of 8 without dropping more than 10%."""
    return make_divisible(filters * width, 8)


def round_repeats(repeats: int, depth: float) -> int:
    """Blocks per stage x depth, rounded up."""
    return int(math.ceil(repeats * depth))


def scaled_stages(scaling: Scaling) -> list[tuple[int, int, int, int, int]]:
    """B0's stage table with channels and repeats scaled: (expand, kernel, stride,
    filters, repeats) per stage."""
    return [(e, k, s, round_filters(c, scaling.width), round_repeats(n, scaling.depth))
            for e, k, s, c, n in B0_STAGES]


class EfficientNet(ImageClassifier):
    """(B, C, r, r) -> conv 3x3/2 -> 7 MBConv stages -> 1x1 conv (head) -> (B, F, r/32, r/32)
    -> GAP -> dropout -> linear; B0 with channels and repeats scaled by ``scaling``."""

    def __init__(self, *, scaling: Scaling, num_classes: int = 1000, in_chans: int = 3,
                 norm_layer=nn.BatchNorm2d, act_layer=nn.SiLU, stem: str = "imagenet",
                 drop_rate: float | None = None, drop_path_rate: float = 0.2,
                 se_ratio: float = 0.25):
        super().__init__(num_classes, in_chans, min_input=1)  # padded convs take any size
        if not (scaling.width > 0 and scaling.depth > 0):
            raise ModelError(f"EfficientNet needs width_mult and depth_mult > 0, got "
                             f"{scaling.width} and {scaling.depth}")
        self.stem, self.scaling = stem, scaling
        small = stem == "cifar"
        c = round_filters(B0_STEM, scaling.width)
        self.stem_layers = ConvNormAct(in_chans, c, 3, 1 if small else 2, norm_layer=norm_layer,
                                       act_layer=act_layer)
        stages = scaled_stages(scaling)
        total, done = sum(n for *_, n in stages), 0
        blocks, first_strided = [], True
        for e, k, s, c_out, n in stages:
            stage = []
            for i in range(n):
                stride = s if i == 0 else 1
                if small and stride == 2 and first_strided:
                    stride, first_strided = 1, False
                dp = drop_path_rate * done / total  # linear in depth, as the reference
                stage.append(InvertedResidual(c, c_out, stride, expand_ratio=e, kernel_size=k,
                                              se_ratio=se_ratio, norm_layer=norm_layer,
                                              act_layer=act_layer, drop_path=dp))
                c, done = c_out, done + 1
            blocks.append(nn.Sequential(*stage))
        head = 4 * c  # 1280 for B0 (= round_filters(1280, width) for every Bn)
        blocks.append(ConvNormAct(c, head, 1, norm_layer=norm_layer, act_layer=act_layer))
        self.blocks = nn.Sequential(*blocks)
        self.num_features = head
        self._set_head(head, num_classes, scaling.dropout if drop_rate is None else drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem_layers(x))


def build_efficientnet(*, variant: str, num_classes: int = 1000, in_chans: int = 3,
                       norm: str = "bn", act: str = "silu", stem: str = "auto",
                       input_size: int | None = None, width_mult: float = 1.0,
                       depth_mult: float = 1.0, resolution: int = 224, drop_rate: float = 0.2,
                       drop_path_rate: float = 0.2) -> EfficientNet:
    """B0 with channels x ``width_mult`` and repeats x ``depth_mult``, made for
    ``resolution`` x ``resolution`` images (``stem="auto"`` decides by ``input_size``, else
    by ``resolution``)."""
    side = input_side(input_size) if input_size is not None else resolution
    return EfficientNet(scaling=Scaling(width_mult, depth_mult, resolution, drop_rate),
                        num_classes=num_classes, in_chans=in_chans,
                        norm_layer=get_norm_layer(norm), act_layer=get_act_layer(act),
                        stem=resolve_stem(stem, side, variant), drop_rate=drop_rate,
                        drop_path_rate=drop_path_rate)


def _released(b: int, params: str) -> Variant:
    """The row of EfficientNet-B``b``: the authors' multipliers as its defaults."""
    s = EFFICIENTNET_PARAMS[b]
    return Variant(
        {}, f"EfficientNet-B{b}: width x{s.width}, depth x{s.depth}, native "
            f"{s.resolution}x{s.resolution}; dropout {s.dropout} by default ({params} "
            f"parameters at 1000 classes).",
        default_input=s.resolution,
        defaults=dict(width_mult=s.width, depth_mult=s.depth, resolution=s.resolution,
                      drop_rate=s.dropout))


EFFICIENTNETS: dict[str, Variant] = {
    "efficientnet_b0": _released(0, "5,288,548"),
    "efficientnet_b1": _released(1, "7,794,184"),
    "efficientnet_b2": _released(2, "9,109,994"),
    "efficientnet_b3": _released(3, "12,233,232"),
    "efficientnet_b4": _released(4, "19,341,616"),
    "efficientnet_b5": _released(5, "30,389,784"),
    "efficientnet_b6": _released(6, "43,040,704"),
    "efficientnet_b7": _released(7, "66,347,960"),
}
register_family(build_efficientnet, EFFICIENTNETS, family="efficientnet", paper=_TAN)
