"""Multilayer perceptrons on flattened images: the baseline without convolutions.

(B, C, H, W) -> flatten (C*H*W) -> [Linear -> norm? -> act -> dropout?] per ``hidden``
size -> linear head. The first layer's width depends on the image, so an MLP is built
for one input size (``input_size``, default 32; the experiment runner passes the data's)
and refuses others with a one-line ModelError.

Rows: ``mlp`` (``hidden`` free, default two layers of 512), and Zhang et al.'s
(2017, "Understanding deep learning requires rethinking generalization") CIFAR-10 MLPs
``mlp1x512`` and ``mlp3x512``: one and three hidden layers of 512 units. For 3x32x32
input and 10 classes they have 1,578,506 and 2,103,818 parameters; on the paper's 28x28
center crops (``input_size=28``) 1,209,866 and 1,735,178, the paper's counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers.blocks import make_act
from cnnlab.layers.factory import get_act_layer
from cnnlab.models.registry import ImageClassifier, Variant, register_family

NORMS = ("none", "bn")
PAPER = ("Zhang et al., Understanding deep learning requires rethinking generalization, "
         "ICLR 2017")


def _side_pair(input_size: int | Sequence[int] | None, name: str) -> tuple[int, int]:
    if input_size is None:
        return 32, 32
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        sides = [input_size, input_size]
    elif isinstance(input_size, Sequence) and not isinstance(input_size, str):
        sides = list(input_size)[-2:]
        if len(sides) == 1:
            sides = sides * 2
    else:
        sides = []
    if len(sides) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                  for s in sides):
        raise ModelError(f"{name}: input_size must be a side N >= 1 or a pair (H, W), "
                         f"got {input_size!r}")
    return sides[0], sides[1]


def _hidden_sizes(hidden: int | Sequence[int], name: str) -> tuple[int, ...]:
    sizes = (hidden,) if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    if isinstance(sizes, str) or not isinstance(sizes, Sequence) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in sizes):
        raise ModelError(f"{name}: hidden must be a list of layer widths >= 1 (e.g. "
                         f"[512, 512]; [] for a linear classifier), got {hidden!r}")
    return tuple(sizes)


class MLP(ImageClassifier):
    """Flatten -> hidden layers -> head. ``forward_features`` gives (B, F): the last hidden
    activation (the flattened image when there are no hidden layers)."""

    def __init__(self, *, num_classes: int = 10, in_chans: int = 3,
                 input_size: tuple[int, int] = (32, 32), hidden: Sequence[int] = (512, 512),
                 act_layer=nn.ReLU, norm: str = "none", dropout: float = 0.0,
                 name: str = "mlp"):
        if norm not in NORMS:
            raise ModelError(f"{name}: norm must be 'none' or 'bn', got {norm!r}")
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"{name}: dropout must be in [0, 1), got {dropout}")
        h, w = input_size
        super().__init__(num_classes, in_chans, min_input=min(h, w))
        self.input_hw = (h, w)
        self.input_size = h if h == w else [h, w]
        layers: list[nn.Module] = [nn.Flatten(1)]
        width = in_chans * h * w
        for out in hidden:
            layers.append(nn.Linear(width, out))
            if norm == "bn":
                layers.append(nn.BatchNorm1d(out))
            layers.append(make_act(act_layer))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = out
        self.features = nn.Sequential(*layers)
        self.num_features = width
        self.pool = nn.Identity()  # features are already (B, F)
        self._set_head(width, num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if tuple(x.shape[-2:]) != self.input_hw:
            name = getattr(self, "model_name", "mlp")
            h, w = self.input_hw
            raise ModelError(f"{name} was built for {h}x{w} images, got "
                             f"{x.shape[-2]}x{x.shape[-1]}; build it with "
                             f"input_size={x.shape[-2]} or resize the images")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def build_mlp(variant: str, num_classes: int = 10, in_chans: int = 3,
              input_size: int | Sequence[int] | None = None,
              hidden: int | Sequence[int] = (512, 512), act: str = "relu",
              norm: str = "none", dropout: float = 0.0) -> MLP:
    """An MLP on flattened images: ``hidden`` layer widths, ``act`` after each, optional
    ``norm`` ("bn": BatchNorm1d before the activation) and ``dropout`` after it; built
    for ``input_size`` (default 32)."""
    return MLP(num_classes=num_classes, in_chans=in_chans,
               input_size=_side_pair(input_size, variant),
               hidden=_hidden_sizes(hidden, variant), act_layer=get_act_layer(act),
               norm=norm, dropout=float(dropout), name=variant)


MLPS = {
    "mlp": Variant({}, "MLP on flattened images; hidden=[512, 512] by default "
                       "(1,841,162 parameters at 3x32x32, 10 classes)", paper=""),
    "mlp1x512": Variant({"hidden": (512,)}, "MLP with one hidden layer of 512 units "
                                            "(Zhang et al.; 1,578,506 parameters at 3x32x32)"),
    "mlp3x512": Variant({"hidden": (512, 512, 512)},
                        "MLP with three hidden layers of 512 units (Zhang et al.; 2,103,818 "
                        "parameters at 3x32x32)"),
}

register_family(build_mlp, MLPS, family="mlp", default_input=32, min_input=32, paper=PAPER)
