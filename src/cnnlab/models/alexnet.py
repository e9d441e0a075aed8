"""AlexNet: five convolutions, three dense layers.

Two published networks are registered, and both take a small-image stem:

- ``alexnet`` (pinned: 61,100,840 parameters at 1000 classes, torchvision's count): the
  single-tower network of Krizhevsky 2014 ("One weird trick for parallelizing
  convolutional neural networks") that torchvision implements: 64-192-384-256-256
  filters, no local response normalization. It is the AlexNet every library compares
  against and the one with widely used pretrained weights, so it owns the plain name.
- ``alexnet_2012``: the original NIPS 2012 network (Krizhevsky, Sutskever & Hinton,
  "ImageNet Classification with Deep Convolutional Neural Networks"): 96-256-384-384-256
  filters, split across two GPUs (conv2, conv4 and conv5 only see their own tower's half
  of the previous layer, written here as ``groups=2``), local response normalization
  after conv1 and conv2; 60,965,224 parameters at 1000 classes (the paper's "60 million",
  and Caffe's bvlc_alexnet). Its conv1 is padded by 2 so a 224x224 input gives the
  paper's 55x55 maps (the paper's arithmetic assumes 227x227).

Both end in 6x6 adaptive average pooling and Dropout-Linear-act twice before the output
layer. ``stem="cifar"`` (or ``"auto"`` with ``input_size <= 64``): the first convolution
becomes 3x3 stride 1 and its max-pool goes, the dense layers narrow to ``hidden=1024`` and
read 4x4 pooled maps: a 32x32 image keeps 7x7 maps after the last pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.layers.blocks import ConvNormAct, init_weights, make_act
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.models.registry import ImageClassifier, Variant, register_family, resolve_stem

_K2012 = "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep CNNs, NIPS 2012"
_K2014 = "Krizhevsky, One weird trick for parallelizing CNNs, arXiv:1404.5997 (2014)"


class AlexNet(ImageClassifier):
    """(B, C, H, W) -> 5 convs (3 max-pools) -> adaptive pool (6x6 | 4x4) -> flatten ->
    [Dropout-Linear-act] x 2 -> Linear -> (B, num_classes)."""

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        channels: Sequence[int] = (64, 192, 384, 256, 256),
        groups: Sequence[int] = (1, 1, 1, 1, 1),
        lrn: bool = False,
        norm_layer=None,
        act_layer=nn.ReLU,
        stem: str = "imagenet",
        hidden: int | None = None,
        drop_rate: float = 0.5,
    ):
        # imagenet: conv1 (k11 s4 p2) and three 3x3/2 pools need 63 pixels (torchvision's
        # min_size); cifar: only the two later pools remain: 7 -> 3 -> 1
        super().__init__(num_classes, in_chans, min_input=63 if stem == "imagenet" else 7)
        self.stem = stem
        c1, c2, c3, c4, c5 = channels

        def cna(a: int, b: int, k: int, s: int = 1, g: int = 1, p: int | None = None):
            return ConvNormAct(a, b, k, s, padding=p, groups=g, norm_layer=norm_layer,
                               act_layer=act_layer, bias=True)

        def lrn_layer() -> nn.Module:  # the paper's k=2, n=5, alpha=1e-4, beta=0.75
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()

        if stem == "imagenet":
            first = [cna(in_chans, c1, 11, 4, p=2), lrn_layer(), nn.MaxPool2d(3, 2)]
        else:
            first = [cna(in_chans, c1, 3, 1), lrn_layer()]
        self.features = nn.Sequential(
            *first,  # (B, c1, 27, 27) at 224 | (B, c1, 32, 32) at 32
            cna(c1, c2, 5, g=groups[1]), lrn_layer(), nn.MaxPool2d(3, 2),  # 13x13 | 15x15
            cna(c2, c3, 3, g=groups[2]),
            cna(c3, c4, 3, g=groups[3]),
            cna(c4, c5, 3, g=groups[4]), nn.MaxPool2d(3, 2),  # 6x6 | 7x7
        )
        self.num_features = c5
        side = 6 if stem == "imagenet" else 4
        hidden = hidden or (4096 if stem == "imagenet" else 1024)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(side), nn.Flatten(1))
        self.pre_logits = nn.Sequential(
            nn.Dropout(drop_rate), nn.Linear(c5 * side * side, hidden), make_act(act_layer),
            nn.Dropout(drop_rate), nn.Linear(hidden, hidden), make_act(act_layer),
        )
        self._set_head(hidden, num_classes)
        init_weights(self, linear_std=0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def build_alexnet(*, variant: str, channels: Sequence[int], groups: Sequence[int],
                  num_classes: int = 1000, in_chans: int = 3, norm: str = "none",
                  act: str = "relu", stem: str = "auto", input_size: int | None = None,
                  lrn: bool = False, hidden: int | None = None,
                  drop_rate: float = 0.5) -> AlexNet:
    """An AlexNet with conv filters ``channels`` and ``groups`` (two towers: 2)."""
    return AlexNet(num_classes=num_classes, in_chans=in_chans, channels=channels,
                   groups=groups, lrn=lrn, norm_layer=get_norm_layer(norm),
                   act_layer=get_act_layer(act), stem=resolve_stem(stem, input_size, variant),
                   hidden=hidden, drop_rate=drop_rate)


ALEXNETS: dict[str, Variant] = {
    "alexnet": Variant(
        dict(channels=(64, 192, 384, 256, 256), groups=(1, 1, 1, 1, 1)),
        "AlexNet as in torchvision (single tower, 64-192-384-256-256, no LRN; 61,100,840 "
        "parameters at 1000 classes).", paper=_K2014),
    "alexnet_2012": Variant(
        dict(channels=(96, 256, 384, 384, 256), groups=(1, 2, 1, 2, 2)),
        "The original two-tower AlexNet (96-256-384-384-256, grouped conv2/4/5, LRN; "
        "60,965,224 parameters at 1000 classes).", paper=_K2012, defaults=dict(lrn=True)),
}
register_family(build_alexnet, ALEXNETS, family="alexnet", default_input=224, min_input=63)
