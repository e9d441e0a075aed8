"""ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s").

A 4x4 stride-4 "patchify" stem with layer norm, four stages of ConvNeXt blocks (depthwise
7x7 -> LayerNorm -> 1x1 x4 -> GELU -> 1x1, layer scale 1e-6, stochastic depth) with a
LayerNorm + 2x2 stride-2 convolution between stages, global average pooling, LayerNorm
and a linear classifier.

The variants are the rows of ``CONVNEXTS``, built by :func:`build_convnext`:

- ``convnext_tiny``: depths 3-3-9-3, widths 96-192-384-768; 28,589,128 parameters.
- ``convnext_small``: depths 3-3-27-3; 50,223,688 parameters (1000 classes; both counts
  are torchvision's).
- ``convnext_cifar``: a small network for 32x32 images that trains on CIFAR in minutes on
  a GPU: depths 2-2-6-2, widths 48-96-192-384, the small-image stem (about 4.8M
  parameters, 0.4 GFLOPs at 32x32).

The norm is the factory's ``"ln2d"`` (ConvNeXt's channel-wise LayerNorm) unless another is
asked for (``norm="bn"`` gives the paper's BN ablation). ``stem="cifar"`` (or ``"auto"``
with ``input_size <= 64``): a 3x3 stride-1 convolution replaces the 4x4 stride-4 patchify,
so 32x32 images reach the last stage at 4x4 instead of 1x1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.blocks import ConvNeXtBlock, make_norm
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.models.registry import ImageClassifier, Variant, register_family, resolve_stem

_LIU = "Liu et al., A ConvNet for the 2020s, CVPR 2022"


class ConvNeXt(ImageClassifier):
    """(B, C, H, W) -> stem (B, dims[0], H/s, W/s) -> 4 stages -> (B, dims[3], H/(8s), W/(8s))
    -> GAP -> norm -> linear; s = 4 (patchify) or 1 (small-image stem)."""

    def __init__(
        self,
        *,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        num_classes: int = 1000,
        in_chans: int = 3,
        norm_layer=None,
        act_layer=nn.GELU,
        stem: str = "imagenet",
        drop_path_rate: float = 0.1,
        layer_scale_init: float = 1e-6,
        drop_rate: float = 0.0,
    ):
        # patchify /4 then three /2 downsamplings with 2x2 kernels: 32 pixels (torchvision's
        # min_size); the small-image stem needs 8
        super().__init__(num_classes, in_chans, min_input=32 if stem == "imagenet" else 8)
        if len(depths) != len(dims) or min(depths) < 1:
            raise ModelError(f"ConvNeXt needs one depth >= 1 per width, got depths="
                             f"{tuple(depths)}, dims={tuple(dims)}")
        self.stem = stem
        if stem == "imagenet":
            stem_conv = nn.Conv2d(in_chans, dims[0], 4, 4)
        else:
            stem_conv = nn.Conv2d(in_chans, dims[0], 3, 1, 1)
        self.stem_layers = nn.Sequential(stem_conv, make_norm(norm_layer, dims[0]))
        total, done = sum(depths), 0
        stages = []
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            layers: list[nn.Module] = []
            if i > 0:  # downsample: norm, then 2x2 stride-2 conv
                layers += [make_norm(norm_layer, dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            for _ in range(depth):
                dp = drop_path_rate * done / max(total - 1, 1)  # linear in depth
                layers.append(ConvNeXtBlock(dim, drop_path=dp, layer_scale_init=layer_scale_init,
                                            norm_layer=norm_layer, act_layer=act_layer))
                done += 1
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.num_features = dims[-1]
        # GAP -> norm on (B, C, 1, 1) -> flatten
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), make_norm(norm_layer, dims[-1]),
                                  nn.Flatten(1))
        self._set_head(dims[-1], num_classes, drop_rate)
        if not any(p.is_meta for p in self.parameters()):  # meta: shapes only (cards)
            self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d | nn.Linear):  # the paper's truncated normal, std 0.02
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem_layers(x))


def build_convnext(*, variant: str, depths: Sequence[int], dims: Sequence[int], native: str,
                   num_classes: int = 1000, in_chans: int = 3, norm: str = "ln2d",
                   act: str = "gelu", stem: str = "auto", input_size: int | None = None,
                   drop_path_rate: float = 0.1, layer_scale_init: float = 1e-6,
                   drop_rate: float = 0.0) -> ConvNeXt:
    """A ConvNeXt of four stages of ``depths`` blocks at ``dims`` channels; ``native`` is
    the stem "auto" picks without an ``input_size`` ("cifar": a small-image network)."""
    return ConvNeXt(depths=depths, dims=dims, num_classes=num_classes, in_chans=in_chans,
                    norm_layer=get_norm_layer(norm), act_layer=get_act_layer(act),
                    stem=resolve_stem(stem, input_size, variant, native),
                    drop_path_rate=drop_path_rate, layer_scale_init=layer_scale_init,
                    drop_rate=drop_rate)


CONVNEXTS: dict[str, Variant] = {
    "convnext_tiny": Variant(
        dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), native="imagenet"),
        "ConvNeXt-T: depths 3-3-9-3, widths 96-192-384-768 (stochastic depth 0.1; 28,589,128 "
        "parameters at 1000 classes)."),
    "convnext_small": Variant(
        dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), native="imagenet"),
        "ConvNeXt-S: depths 3-3-27-3, widths 96-192-384-768 (stochastic depth 0.4; 50,223,688 "
        "parameters at 1000 classes).", defaults=dict(drop_path_rate=0.4)),
    "convnext_cifar": Variant(
        dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384), native="cifar"),
        "A small ConvNeXt for 32x32 images: depths 2-2-6-2, widths 48-96-192-384 (4,835,626 "
        "parameters at 10 classes).",
        default_input=32, min_input=8, defaults=dict(num_classes=10)),
}
register_family(build_convnext, CONVNEXTS, family="convnext", default_input=224, min_input=32,
                paper=_LIU)
