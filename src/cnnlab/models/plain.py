"""A cnnlab model as stock PyTorch computes it, for baselines ("the plain loop")."""

from __future__ import annotations

from torch import nn

from cnnlab.layers.conv import stock_convs
from cnnlab.models.vgg import VGGBlock


def plain_pytorch(model: nn.Module) -> nn.Module:
    """Undo, in place, what cnnlab computes differently from stock PyTorch while giving the
    same outputs and gradients: :class:`~cnnlab.layers.Conv2d` becomes ``nn.Conv2d`` (its
    small-map path) and each :class:`~cnnlab.models.vgg.VGGBlock` applies its last
    activation before the pooling again. Weights are kept; returns ``model``."""
    stock_convs(model)
    for module in model.modules():
        if isinstance(module, VGGBlock):
            module.act_before_pool()
    return model


__all__ = ["plain_pytorch"]
