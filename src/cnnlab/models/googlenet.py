"""GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going Deeper with Convolutions"), with
batch norm after every convolution, as torchvision.

Nine inception modules (3a-3b, 4a-4e, 5a-5b; widths from the paper's table 1) between
max-pools, global average pooling, dropout 0.2 and one linear layer: 6,624,904 parameters
at 1000 classes without the auxiliary heads, torchvision's count. torchvision (and its
pretrained weights) use a 3x3 convolution in the branch the paper gives as 5x5; so does
the default here (``c5_kernel=3``) to keep that count; ``c5_kernel=5`` builds the paper's
branch (7,005,832 parameters).

Auxiliary heads (``aux_logits=True``; after 4a and 4d: 4x4 average pool, 1x1 conv to 128,
dense 1024, dropout 0.7, linear) exist for training: ``forward`` still returns only the
main logits (one interface for every model); ``forward_with_aux(x)`` returns
``(logits, [aux1, aux2])`` for a loss that adds them (the paper weights them by 0.3).

``stem="cifar"`` (or ``"auto"`` with ``input_size <= 64``): the 7x7 stride-2 convolution
becomes 3x3 stride 1 and the two max-pools of the stem go, so 32x32 images enter 3a at
32x32 and the last modules see 8x8 (as kuangliu/pytorch-cifar's GoogLeNet).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.layers.blocks import ConvNormAct, InceptionModule, init_weights, make_act
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.models.registry import ImageClassifier, register_model, resolve_stem

# name: (c_in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj): the paper's table 1
INCEPTION_CFG: dict[str, tuple[int, ...]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class InceptionAux(nn.Module):
    """(B, C, H, W) -> 4x4 avg pool -> 1x1 conv 128 -> flatten (2048) -> 1024 -> classes."""

    def __init__(self, c_in: int, num_classes: int, *, norm_layer, act_layer,
                 drop_rate: float = 0.7):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvNormAct(c_in, 128, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.fc1 = nn.Linear(2048, 1024)
        self.act = make_act(act_layer)
        self.drop = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x)).flatten(1)
        return self.fc2(self.drop(self.act(self.fc1(x))))


class GoogLeNet(ImageClassifier):
    """(B, C, 224, 224) -> stem (B, 192, 28, 28) -> 3a, 3b -> pool (14x14) -> 4a-4e ->
    pool (7x7) -> 5a, 5b -> (B, 1024, 7, 7) -> GAP -> dropout -> linear."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3,
                 norm_layer=nn.BatchNorm2d, act_layer=nn.ReLU, stem: str = "imagenet",
                 aux_logits: bool = False, drop_rate: float = 0.2, c5_kernel: int = 3):
        # imagenet: the stride-2 conv and ceil-mode pools need 15 pixels (torchvision's
        # min_size); cifar: the 3x3/2 ceil-mode pool after 3b needs 2 (2 -> 1 -> 1)
        super().__init__(num_classes, in_chans, min_input=15 if stem == "imagenet" else 2)
        self.stem = stem

        def cna(a: int, b: int, k: int, s: int = 1) -> ConvNormAct:
            return ConvNormAct(a, b, k, s, norm_layer=norm_layer, act_layer=act_layer)

        if stem == "imagenet":
            self.stem_layers = nn.Sequential(
                cna(in_chans, 64, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True),  # (B, 64, 56, 56)
                cna(64, 64, 1), cna(64, 192, 3), nn.MaxPool2d(3, 2, ceil_mode=True),  # 28x28
            )
        else:
            self.stem_layers = nn.Sequential(cna(in_chans, 64, 3), cna(64, 64, 1),
                                             cna(64, 192, 3))  # (B, 192, 32, 32) at 32

        def inception(key: str) -> InceptionModule:
            return InceptionModule(*INCEPTION_CFG[key], norm_layer=norm_layer,
                                   act_layer=act_layer, c5_kernel=c5_kernel)

        self.inception3 = nn.Sequential(inception("3a"), inception("3b"))
        self.pool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception4a = inception("4a")
        self.inception4bcd = nn.Sequential(inception("4b"), inception("4c"), inception("4d"))
        self.inception4e = inception("4e")
        self.pool4 = nn.MaxPool2d(2, 2, ceil_mode=True)  # torchvision's 2x2 (paper: 3x3/2;
        # the same 7x7 output at 224)
        self.inception5 = nn.Sequential(inception("5a"), inception("5b"))
        self.num_features = 1024
        aux = dict(norm_layer=norm_layer, act_layer=act_layer)
        self.aux1 = InceptionAux(512, num_classes, **aux) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, **aux) if aux_logits else None
        self._set_head(1024, num_classes, drop_rate)
        init_weights(self)

    def _features(self, x: torch.Tensor, aux: list | None) -> torch.Tensor:
        x = self.pool3(self.inception3(self.stem_layers(x)))  # (B, 480, 14, 14) at 224
        x = self.inception4a(x)
        if aux is not None and self.aux1 is not None:
            aux.append(self.aux1(x))
        x = self.inception4bcd(x)  # (B, 528, 14, 14)
        if aux is not None and self.aux2 is not None:
            aux.append(self.aux2(x))
        x = self.pool4(self.inception4e(x))  # (B, 832, 7, 7)
        return self.inception5(x)  # (B, 1024, 7, 7)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x, None)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Main logits and the auxiliary heads' logits (empty without ``aux_logits``)."""
        self.check_input(x)
        aux: list[torch.Tensor] = []
        return self.forward_head(self._features(x, aux)), aux

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = nn.Linear(1024, num_classes)


@register_model(family="googlenet", default_input=224, min_input=15,
                paper="Szegedy et al., Going Deeper with Convolutions, CVPR 2015")
def googlenet(num_classes: int = 1000, in_chans: int = 3, norm: str = "bn", act: str = "relu",
              stem: str = "auto", input_size: int | None = None, aux_logits: bool = False,
              drop_rate: float = 0.2, c5_kernel: int = 3) -> GoogLeNet:
    """GoogLeNet with batch norm (torchvision's layout; aux heads optional)."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, norm_layer=get_norm_layer(norm),
                     act_layer=get_act_layer(act), stem=resolve_stem(stem, input_size, "googlenet"),
                     aux_logits=aux_logits, drop_rate=drop_rate, c5_kernel=c5_kernel)
