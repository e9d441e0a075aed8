"""Stochastic depth grows linearly over a ResNet's blocks: block i of n drops its branch
with rate x i / (n - 1) (timm's rule), in the CIFAR and the ImageNet families."""

import pytest

from cnnlab.layers.drop import DropPath
from cnnlab.models import create_model


def _block_rates(model) -> list[float]:
    rates = []
    for stage in model.stages:
        for block in stage:
            dp = block.drop_path
            rates.append(dp.p if isinstance(dp, DropPath) else 0.0)
    return rates


@pytest.mark.parametrize("name,blocks", [("resnet20", 9), ("resnet18", 8)])
def test_drop_path_rate_is_linear_in_depth(name, blocks):
    rates = _block_rates(create_model(name, num_classes=10, drop_path_rate=0.1))
    assert rates == pytest.approx([0.1 * i / (blocks - 1) for i in range(blocks)])
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.1)
    assert _block_rates(create_model(name, num_classes=10)) == [0.0] * blocks
