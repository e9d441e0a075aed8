"""LeNet-5 (LeCun et al. 1998, "Gradient-Based Learning Applied to Document Recognition").

32x32 input -> C1: 6 maps 5x5 (28x28) -> S2: 2x2 pool (14x14) -> C3: 16 maps 5x5 (10x10)
-> S4: 2x2 pool (5x5) -> C5: 120 units -> F6: 84 units -> output. The modern reading of the
paper: C3 connects to all six S2 maps (the paper's sparse connection table is dropped),
pooling has no trainable coefficients and the output is a linear layer instead of
Euclidean RBF units; 61,706 parameters for one input channel and 10 classes.

Options: ``act`` "tanh" (the paper's squashing function) or "relu"..., ``pool`` "avg"
(the paper's subsampling) or "max", an optional ``norm`` after each convolution, and
``padding`` for the first convolution: MNIST's 28x28 digits were padded to 32x32 in the
paper, so by default a declared ``input_size`` below 32 pads by 2.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.blocks import ConvNormAct, make_act
from cnnlab.layers.factory import get_act_layer, get_norm_layer
from cnnlab.models.registry import ImageClassifier, input_side, register_model, resolve_stem

POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet5(ImageClassifier):
    """(B, C, 32, 32) -> features (B, 16, 5, 5) -> flatten (400) -> 120 -> 84 -> classes.

    Other sizes of at least ``min_input`` work: a 5x5 adaptive average pool before the
    dense layers keeps 400 inputs (it is the identity at 32x32).
    """

    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, norm_layer=None,
                 act_layer=nn.Tanh, pool: str = "avg", padding: int = 0):
        if pool not in POOLS:
            raise ModelError(f"lenet5 pool must be 'avg' or 'max', got {pool!r}")
        if padding < 0:
            raise ModelError(f"lenet5 padding must be >= 0, got {padding}")
        # C1 (k5) -> S2 (/2) -> C3 (k5) -> S4 (/2) needs 16 pixels: 16 -> 12 -> 6 -> 2 -> 1
        super().__init__(num_classes, in_chans, min_input=max(16 - 2 * padding, 1))
        pool_layer = POOLS[pool]
        self.features = nn.Sequential(
            ConvNormAct(in_chans, 6, 5, padding=padding, norm_layer=norm_layer,
                        act_layer=act_layer),  # C1 (B, 6, 28, 28)
            pool_layer(2, 2),  # S2 (B, 6, 14, 14)
            ConvNormAct(6, 16, 5, padding=0, norm_layer=norm_layer,
                        act_layer=act_layer),  # C3 (B, 16, 10, 10)
            pool_layer(2, 2),  # S4 (B, 16, 5, 5)
        )
        self.num_features = 16
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(5), nn.Flatten(1))  # (B, 400)
        self.pre_logits = nn.Sequential(
            nn.Linear(400, 120), make_act(act_layer),  # C5
            nn.Linear(120, 84), make_act(act_layer),  # F6
        )
        self._set_head(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model(family="lenet", default_input=32, min_input=16,
                paper="LeCun et al., Gradient-Based Learning Applied to Document "
                      "Recognition, Proc. IEEE 1998")
def lenet5(num_classes: int = 10, in_chans: int = 3, norm: str = "none", act: str = "tanh",
           stem: str = "auto", input_size: int | None = None, pool: str = "avg",
           padding: int | None = None) -> LeNet5:
    """LeNet-5: tanh and average pooling by default; ``padding=None`` pads the first
    convolution by 2 when the declared input is smaller than 32 (28x28 MNIST -> 32x32)."""
    resolve_stem(stem, input_size, "lenet5", native="cifar")  # a small-image net already
    if padding is None:
        side = input_side(input_size)
        padding = 2 if side is not None and side < 32 else 0
    return LeNet5(num_classes=num_classes, in_chans=in_chans, norm_layer=get_norm_layer(norm),
                  act_layer=get_act_layer(act), pool=pool, padding=padding)
