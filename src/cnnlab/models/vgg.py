"""VGG: the parametric VGG-like family of the depth experiment (``vgg``).

``vgg``: ``blocks`` blocks of ``layers`` 3x3 convolutions (same filters within a block,
ReLU, optional norm), each block ending in 2x2 max-pooling; filters start at ``width``
and double after each block; global average pooling, then one linear layer.
Simonyan & Zisserman, "Very Deep Convolutional Networks", ICLR 2015.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.models.registry import register_model


def conv_norm_act(c_in: int, c_out: int, norm_layer=None, act_layer=nn.ReLU) -> list[nn.Module]:
    """3x3 'same' convolution, optional norm, activation (bias only when there is no norm)."""
    mods: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm_layer is None)]
    if norm_layer is not None:
        mods.append(norm_layer(c_out))
    mods.append(act_layer(inplace=True) if act_layer is nn.ReLU else act_layer())
    return mods


class VGGBlock(nn.Sequential):
    """``layers`` conv-norm-act units at ``c_out`` filters, then 2x2 max-pooling."""

    def __init__(self, c_in: int, c_out: int, layers: int, norm_layer=None, act_layer=nn.ReLU):
        mods = []
        for i in range(layers):
            mods += conv_norm_act(c_in if i == 0 else c_out, c_out, norm_layer, act_layer)
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
            stages.append(VGGBlock(c_in, c_out, layers, norm_layer, act_layer))
            c_in = c_out
        self.features = nn.Sequential(*stages)
        self.num_features = c_in
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C_last, H / 2**blocks, W / 2**blocks)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x).flatten(1))

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
) -> VGGLike:
    """The depth experiment's VGG-like network (no normalization by default)."""
    return VGGLike(num_classes, in_chans, blocks, layers, width,
                   get_norm_layer(norm), get_act_layer(act), input_size)
