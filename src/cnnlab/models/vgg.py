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

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.blocks import ConvNormAct, init_weights
from cnnlab.layers.drop import Dropout
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.layers.residual import Residual
from cnnlab.models.registry import ImageClassifier, register_model, resolve_stem


def conv_norm_act(c_in: int, c_out: int, norm_layer=None, act_layer=nn.ReLU) -> list[nn.Module]:
    """3x3 'same' convolution, optional norm, activation (bias only when there is no norm)."""
    mods: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm_layer is None)]
    if norm_layer is not None:
        mods.append(norm_layer(c_out))
    mods.append(act_layer(inplace=True) if act_layer is nn.ReLU else act_layer())
    return mods


class VGGBlock(nn.Sequential):
    """``layers`` conv-norm-act units at ``c_out`` filters, then 2x2 max-pooling.

    With ``residual`` the units form the branch of a :class:`~cnnlab.layers.Residual`
    (the last activation moves after the addition, as in ResNet; a 1x1 projection
    shortcut when the channel count changes)."""

    def __init__(self, c_in: int, c_out: int, layers: int, norm_layer=None, act_layer=nn.ReLU,
                 residual: bool = False):
        mods = []
        for i in range(layers):
            mods += conv_norm_act(c_in if i == 0 else c_out, c_out, norm_layer, act_layer)
        if residual:
            branch = nn.Sequential(*mods[:-1])  # (B, c_out, H, W), activation after the sum
            mods = [Residual(branch, "auto", c_in, c_out, norm_layer=norm_layer,
                             act_layer=act_layer)]
        mods.append(nn.MaxPool2d(2))
        super().__init__(*mods)


class VGGLike(nn.Module):
    """(B, C, H, W) -> blocks of convs and pooling -> GAP -> linear -> (B, num_classes)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        blocks: int = 3,
        layers: int = 2,
        width: int = 32,
        norm_layer=None,
        act_layer=nn.ReLU,
        input_size: int = 32,
        max_width: int = 0,
        residual: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
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
            if max_width:
                c_out = min(c_out, max_width)
            stages.append(VGGBlock(c_in, c_out, layers, norm_layer, act_layer, residual))
            c_in = c_out
        self.features = nn.Sequential(*stages)
        self.num_features = c_in
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c_in, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C_last, H / 2**blocks, W / 2**blocks)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.pool(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes)


@register_model(family="vgg", default_input=32, min_input=2, paper="Simonyan & Zisserman 2015")
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
    return VGGLike(num_classes, in_chans, blocks, layers, width, get_norm_layer(norm),
                   get_act_layer(act), input_size, residual=residual, dropout=dropout)


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

    def __init__(self, cfg: list[int | str], num_classes: int = 1000, in_chans: int = 3,
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


def _vgg(cfg: str, *, num_classes: int, in_chans: int, norm: str, act: str, stem: str,
         input_size: int | None, drop_rate: float) -> VGG:
    return VGG(CFGS[cfg], num_classes, in_chans, get_norm_layer(norm), get_act_layer(act),
               resolve_stem(stem, input_size, cfg), drop_rate=drop_rate)


def _register_vgg(cfg: str, bn: bool) -> None:
    name = f"{cfg}_bn" if bn else cfg

    def builder(num_classes: int = 1000, in_chans: int = 3, norm: str = "bn" if bn else "none",
                act: str = "relu", stem: str = "auto", input_size: int | None = None,
                drop_rate: float = 0.5) -> VGG:
        return _vgg(cfg, num_classes=num_classes, in_chans=in_chans, norm=norm, act=act,
                    stem=stem, input_size=input_size, drop_rate=drop_rate)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (f"VGG-{cfg[3:]} (recipe {cfg!r})" + (" with batch norm." if bn else "."))
    register_model(builder, family="vgg", default_input=224, min_input=32, paper=_SZ)


for _cfg in CFGS:
    _register_vgg(_cfg, bn=False)
    _register_vgg(_cfg, bn=True)
