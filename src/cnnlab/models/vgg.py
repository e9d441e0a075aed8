"""VGG: the parametric VGG-like family of the depth experiment (``vgg``) and the published
VGG-11/13/16/19 networks, with and without batch norm, from their layer recipes.

``vgg``: ``blocks`` blocks of ``layers`` 3x3 convolutions (same filters within a block,
ReLU, optional norm), each block ending in 2x2 max-pooling; filters start at ``width``
and double after each block; global average pooling, then one linear layer.

``vgg11`` ... ``vgg19_bn``: configurations A, B, D and E of the paper (recipes below: a
number is a 3x3 convolution with that many filters, "M" a 2x2 max-pool), then 7x7
adaptive average pooling and the 4096-4096 dense classifier with dropout, as torchvision
(parameter counts equal its: vgg16 138,357,544; vgg16_bn 138,365,992; the convolutions
keep their bias next to batch norm, as there). With ``stem="cifar"`` (or ``"auto"`` with
``input_size <= 64``) the features are unchanged (VGG has no large-image stem: its first
layers are already 3x3 stride-1) and the classifier becomes global pooling and one linear
layer from 512 features, the usual CIFAR VGG: five pools take 32x32 to 1x1, so 32 is
also the smallest input.

Simonyan & Zisserman, "Very Deep Convolutional Networks", ICLR 2015.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.blocks import ConvNormAct, init_weights, make_act
from cnnlab.layers.drop import Dropout
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.layers.residual import Residual
from cnnlab.models.registry import (
    ImageClassifier,
    Variant,
    register_family,
    register_model,
    resolve_stem,
)

# Activations that commute with 2x2 max-pooling to the bit, gradients included: values are
# the same (they are monotone), and where the two orders pick different pixels of a window
# (a tie), the gradient is zero in both (ReLU: every pixel of the window is <= 0; ReLU6: the
# tie is at 0 or at 6, where its slope is 0).
POOL_FIRST_ACTS = (nn.ReLU, nn.ReLU6)


class VGGBlock(nn.Sequential):
    """``layers`` 3x3 conv-norm-act units at ``c_out`` filters (a bias only without norm),
    then 2x2 max-pooling: (B, c_in, H, W) -> (B, c_out, H/2, W/2).

    With ``residual`` the units form the branch of a :class:`~cnnlab.layers.Residual`
    (the last activation moves after the addition, as in ResNet; a 1x1 projection
    shortcut when the channel count changes).

    With an activation of ``POOL_FIRST_ACTS`` the block's last activation runs after the
    pooling instead, on a quarter of the pixels: the same outputs and gradients to the bit,
    and a training step 8-12 % faster for the one-layer-per-block and one-block cells of the
    depth sweep (bf16, one thread, AMD Zen 4), where that activation is a large part of the
    elementwise work."""

    def __init__(self, c_in: int, c_out: int, layers: int, norm_layer=None, act_layer=nn.ReLU,
                 residual: bool = False):
        pool_first = act_layer in POOL_FIRST_ACTS
        last_act = None if residual or pool_first else act_layer  # the last unit's
        units = [ConvNormAct(c_in if i == 0 else c_out, c_out, 3, norm_layer=norm_layer,
                             act_layer=last_act if i == layers - 1 else act_layer)
                 for i in range(layers)]
        if residual:
            units = [Residual(nn.Sequential(*units), "auto", c_in, c_out, norm_layer=norm_layer,
                              act_layer=None if pool_first else act_layer)]
        tail = [nn.MaxPool2d(2), make_act(act_layer)] if pool_first else [nn.MaxPool2d(2)]
        super().__init__(*units, *tail)

    def act_before_pool(self) -> VGGBlock:
        """Move the last activation back before the pooling (the seed model's order, which
        gives the same outputs and gradients), in place; returns the block."""
        if not isinstance(self[-1], POOL_FIRST_ACTS):
            return self
        act, last = self[-1], self[-3]
        del self[-1]
        if isinstance(last, Residual):
            last.act = act  # after the addition
        else:
            last.add_module("act", act)  # ConvNormAct: conv, [norm], act
        return self


# A key of a checkpoint written before VGGLike was built from ConvNormAct: "features.B.J.p"
# (or "features.B.0.branch.J.p"), J counting conv, [norm], act modules of each unit.
_LEGACY_KEY = re.compile(r"features\.(\d+)\.(0\.branch\.)?(\d+)\.(\w+)")


class VGGLike(ImageClassifier):
    """(B, C, H, W) -> blocks of convs and pooling -> GAP -> [dropout] -> linear ->
    (B, num_classes).

    The weights start from PyTorch's default initialization, drawn in module order (each
    convolution, then the classifier), as the seed's depth experiment did. Checkpoints of
    the seed's layout (``features.B.J``, ``head``) still load."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        blocks: int = 3,
        layers: int = 2,
        width: int = 32,
        norm_layer=None,
        act_layer=nn.ReLU,
        input_size: int = 32,
        residual: bool = False,
        dropout: float = 0.0,
    ):
        # each block halves the side (floor): 2**blocks pixels leave 1x1 features
        super().__init__(num_classes, in_chans, min_input=2**blocks)
        if blocks < 1 or layers < 1 or width < 1:
            raise ModelError(
                f"vgg needs blocks, layers and width >= 1, got {blocks}, {layers}, {width}"
            )
        max_blocks = max(int(input_size).bit_length() - 1, 0)  # floor(log2(size))
        if blocks > max_blocks:
            raise ModelError(
                f"vgg with {blocks} blocks pools a {input_size}x{input_size} input below 1x1; "
                f"at most {max_blocks} blocks fit this input size"
            )
        self.input_size = input_size
        stages, c_in = [], in_chans
        for b in range(blocks):
            c_out = width * 2**b
            stages.append(VGGBlock(c_in, c_out, layers, norm_layer=norm_layer, act_layer=act_layer,
                                   residual=residual))
            c_in = c_out
        self.features = nn.Sequential(*stages)
        self.num_features = c_in
        self._set_head(c_in, num_classes)
        self.head_drop = Dropout(dropout) if dropout > 0 else nn.Identity()  # cnnlab's masks
        # the head after the features, as the seed model registered them: parameters() (the
        # optimizer's order, which checkpoints store) and named_modules() keep that order
        for name in ("pool", "pre_logits", "head_drop", "fc"):
            self._modules[name] = self._modules.pop(name)
        self._legacy_unit = 3 if norm_layer is not None else 2  # modules per unit, seed layout

    @property
    def head(self) -> nn.Module:
        """The final linear layer (``fc``), under the seed model's name."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C_last, H / 2**blocks, W / 2**blocks)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # rename the seed layout's keys (torch's BatchNorm migrates old checkpoints likewise)
        k = self._legacy_unit
        for key in [key for key in state_dict if key.startswith(prefix)]:
            rest = key[len(prefix):]
            m = _LEGACY_KEY.fullmatch(rest)
            if m:
                b, branch, j, name = m.groups()
                part = "conv" if int(j) % k == 0 else "norm"
                new = f"features.{b}.{branch or ''}{int(j) // k}.{part}.{name}"
            elif rest in ("head.weight", "head.bias"):
                new = "fc." + rest[len("head."):]
            else:
                continue
            state_dict[prefix + new] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@register_model(family="vgg", default_input=32, min_input=8, paper="Simonyan & Zisserman 2015")
def vgg(
    num_classes: int = 10,
    in_chans: int = 3,
    blocks: int = 3,
    layers: int = 2,
    width: int = 32,
    norm: str = "none",
    act: str = "relu",
    input_size: int = 32,
    residual: bool = False,
    dropout: float = 0.0,
) -> VGGLike:
    """The depth experiment's VGG-like network (no normalization by default).

    ``residual=True`` adds a skip connection around each block's convolutions;
    ``dropout`` is applied to the pooled features before the linear head."""
    return VGGLike(num_classes=num_classes, in_chans=in_chans, blocks=blocks, layers=layers,
                   width=width, norm_layer=get_norm_layer(norm), act_layer=get_act_layer(act),
                   input_size=input_size, residual=residual, dropout=dropout)


# --- the published configurations -------------------------------------------------------

_SZ = "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015"

CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # A
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # B
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],  # D
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],  # E
}


class VGG(ImageClassifier):
    """Features from a recipe, then the classifier.

    (B, C, H, W) -> features (B, 512, H/32, W/32) -> "imagenet": 7x7 adaptive average pool,
    flatten (25088), Linear-act-Dropout twice (``hidden`` units), Linear -> (B, classes);
    "cifar": global average pool (512), Linear -> (B, classes).
    """

    def __init__(self, *, cfg: list[int | str], num_classes: int = 1000, in_chans: int = 3,
                 norm_layer=None, act_layer=nn.ReLU, stem: str = "imagenet",
                 hidden: int = 4096, drop_rate: float = 0.5):
        pools = sum(1 for v in cfg if v == "M")
        super().__init__(num_classes, in_chans, min_input=2**pools)  # each pool halves (floor)
        self.stem = stem
        layers: list[nn.Module] = []
        c_in = in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(ConvNormAct(c_in, int(v), 3, norm_layer=norm_layer,
                                          act_layer=act_layer, bias=True))
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        self.num_features = c_in
        if stem == "imagenet":
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(7), nn.Flatten(1))  # (B, 512*7*7)
            self.pre_logits = nn.Sequential(
                nn.Linear(c_in * 49, hidden), act_layer(), nn.Dropout(drop_rate),
                nn.Linear(hidden, hidden), act_layer(), nn.Dropout(drop_rate),
            )
            self._set_head(hidden, num_classes)
        else:
            self._set_head(c_in, num_classes)
        init_weights(self, linear_std=0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 512, H/32, W/32)


def build_vgg(*, variant: str, cfg: list[int | str], num_classes: int = 1000,
              in_chans: int = 3, norm: str = "none", act: str = "relu", stem: str = "auto",
              input_size: int | None = None, drop_rate: float = 0.5) -> VGG:
    """A published VGG from its layer recipe ``cfg``."""
    return VGG(cfg=cfg, num_classes=num_classes, in_chans=in_chans,
               norm_layer=get_norm_layer(norm), act_layer=get_act_layer(act),
               stem=resolve_stem(stem, input_size, variant), drop_rate=drop_rate)


_BN = dict(norm="bn")
VGGS: dict[str, Variant] = {
    "vgg11": Variant(dict(cfg=CFGS["vgg11"]),
                     "VGG-11 (recipe 'vgg11'; 132,863,336 parameters at 1000 classes)."),
    "vgg11_bn": Variant(dict(cfg=CFGS["vgg11"]), "VGG-11 (recipe 'vgg11') with batch norm "
                        "(132,868,840 parameters at 1000 classes).", defaults=_BN),
    "vgg13": Variant(dict(cfg=CFGS["vgg13"]),
                     "VGG-13 (recipe 'vgg13'; 133,047,848 parameters at 1000 classes)."),
    "vgg13_bn": Variant(dict(cfg=CFGS["vgg13"]), "VGG-13 (recipe 'vgg13') with batch norm "
                        "(133,053,736 parameters at 1000 classes).", defaults=_BN),
    "vgg16": Variant(dict(cfg=CFGS["vgg16"]),
                     "VGG-16 (recipe 'vgg16'; 138,357,544 parameters at 1000 classes)."),
    "vgg16_bn": Variant(dict(cfg=CFGS["vgg16"]), "VGG-16 (recipe 'vgg16') with batch norm "
                        "(138,365,992 parameters at 1000 classes).", defaults=_BN),
    "vgg19": Variant(dict(cfg=CFGS["vgg19"]),
                     "VGG-19 (recipe 'vgg19'; 143,667,240 parameters at 1000 classes)."),
    "vgg19_bn": Variant(dict(cfg=CFGS["vgg19"]), "VGG-19 (recipe 'vgg19') with batch norm "
                        "(143,678,248 parameters at 1000 classes).", defaults=_BN),
}
register_family(build_vgg, VGGS, family="vgg", default_input=224, min_input=32, paper=_SZ)
