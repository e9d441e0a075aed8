"""SpeedNet: the small fast network of the CIFAR-10 speed records (Jordan 2024, "94% on
CIFAR-10 in 3.29 seconds on a single GPU", arXiv 2404.00498; after Page 2018).

    (B, 3, 32, 32) -> patch whitening 2x2 (24 channels, frozen filters, trained bias)
    -> GELU (B, 24, 31, 31)
    -> 3 blocks: conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU
       widths 64 / 256 / 256: (B, 64, 15, 15) -> (B, 256, 7, 7) -> (B, 256, 3, 3)
    -> global max pool (B, 256) -> linear (no bias) -> x 1/9 (B, classes)

The whitening filters come from the training data: call ``model.init_from_data(images)``
with normalized training images before training (the run wiring does: see
:class:`cnnlab.train.callbacks.DataInit`). Batch norm follows the record: eps 1e-12,
running statistics updated with PyTorch momentum 0.4 (the record's "0.6" is the weight of
the old value), scales frozen at 1 unless ``norm_scale=True``. Convolutions have no bias and
start with the identity (Dirac) on their first ``c_in`` filters. The global pool is an
adaptive max pool, the record's 3x3 max pool at 32 px, so smaller inputs (progressive
resizing) also work.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.whiten import PatchWhitening
from cnnlab.models.registry import ImageClassifier, Variant, register_family


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(c_in, c_out)])  # start near the identity
    return conv


def _bn(c: int, momentum: float, scale: bool) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, eps=1e-12, momentum=momentum)
    bn.weight.requires_grad_(scale)  # frozen at 1 unless norm_scale
    return bn


class SpeedBlock(nn.Module):
    """(B, c_in, H, W) -> (B, c_out, H//2, W//2): conv -> pool -> BN -> GELU -> conv -> BN
    -> GELU (pooling before the first norm: the expensive conv runs once at full size)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float, norm_scale: bool):
        super().__init__()
        self.conv1 = _conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _bn(c_out, bn_momentum, norm_scale)
        self.conv2 = _conv(c_out, c_out)
        self.norm2 = _bn(c_out, bn_momentum, norm_scale)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class SpeedNet(ImageClassifier):
    """See the module docstring. ``widths``: channels of the three blocks."""

    def __init__(self, *, widths: tuple[int, int, int] = (64, 256, 256), num_classes: int = 10,
                 in_chans: int = 3, whiten_kernel: int = 2, whiten_eps: float = 5e-4,
                 bn_momentum: float = 0.4, norm_scale: bool = False,
                 logit_scale: float = 1 / 9, variant: str = "speednet"):
        if len(widths) != 3 or min(widths) < 1:
            raise ModelError(f"{variant} widths must be three positive integers, got {widths}")
        if not 0 < bn_momentum <= 1:
            raise ModelError(f"{variant} bn_momentum must be in (0, 1], got {bn_momentum}")
        # whitening (k-1 px lost) then three halvings: 8 + k - 1 px give 1x1 maps at the end
        super().__init__(num_classes, in_chans, min_input=8 + whiten_kernel - 1)
        self.whiten = PatchWhitening(in_chans, whiten_kernel, whiten_eps)
        self.act = nn.GELU()
        c = [self.whiten.out_channels, *widths]
        self.blocks = nn.Sequential(*[SpeedBlock(c[i], c[i + 1], bn_momentum, norm_scale)
                                      for i in range(3)])
        self.num_features = widths[-1]
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(1))  # (B, F)
        self.logit_scale = logit_scale  # the record's 1/9: small logits at the start
        self.fc_in = widths[-1]
        self.fc = nn.Linear(widths[-1], num_classes, bias=False) if num_classes else nn.Identity()

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Fit the whitening filters to ``images`` (N, C, H, W), normalized as in training."""
        self.whiten.init_from_data(images)

    def whitening_biases(self) -> list[nn.Parameter]:
        """What ``train.whiten_bias_epochs`` freezes after its epochs."""
        return [self.whiten.bias]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.act(self.whiten(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)
        return x if pre_logits else self.fc(x) * self.logit_scale

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.fc_in, num_classes, bias=False) if num_classes else nn.Identity()


def speednet(*, widths=(64, 256, 256), num_classes: int = 10, in_chans: int = 3,
             whiten_kernel: int = 2, whiten_eps: float = 5e-4, bn_momentum: float = 0.4,
             norm_scale: bool = False, logit_scale: float = 1 / 9,
             variant: str = "speednet") -> SpeedNet:
    """The family builder: every variant is a row of :data:`VARIANTS`."""
    return SpeedNet(widths=tuple(int(w) for w in widths), num_classes=num_classes,
                    in_chans=in_chans, whiten_kernel=whiten_kernel, whiten_eps=whiten_eps,
                    bn_momentum=bn_momentum, norm_scale=norm_scale, logit_scale=logit_scale,
                    variant=variant)


VARIANTS = {
    "speednet": Variant({"widths": (64, 256, 256)},
                        "the airbench94 network: widths 64/256/256, 1.97M parameters"),
    "speednet-s": Variant({"widths": (32, 128, 128)},
                          "half width: 32/128/128, about a quarter of the compute"),
    "speednet-l": Variant({"widths": (128, 384, 384)},
                          "wider: 128/384/384, for longer runs"),
}

register_family(speednet, VARIANTS, family="speednet", default_input=32, min_input=9,
                paper="Jordan 2024, arXiv 2404.00498")
