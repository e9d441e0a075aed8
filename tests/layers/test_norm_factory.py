"""Factory names resolve to layers that work as norm_layer(C); public exports exist."""

import pytest
import torch
from torch import nn

import cnnlab.layers as layers
from cnnlab.errors import ModelError
from cnnlab.layers import (
    BatchChannelNorm,
    Conv2d,
    GroupNorm,
    InstanceNorm,
    LayerNorm2d,
    LayerNormCHW,
    WSConv2d,
    get_act_layer,
    get_conv_layer,
    get_norm_layer,
    norm_names,
)


@pytest.mark.parametrize("name, cls", [
    ("bn", nn.BatchNorm2d), ("ln", LayerNormCHW), ("ln2d", LayerNorm2d), ("gn", GroupNorm),
    ("in", InstanceNorm), ("bcn", BatchChannelNorm), ("GN", GroupNorm),
])
def test_norm_names_resolve(name, cls):
    assert get_norm_layer(name) is cls


@pytest.mark.parametrize("name", [n for n in norm_names() if n != "none"] + ["gn4"])
def test_every_norm_is_a_norm_layer_of_c(name):
    layer = get_norm_layer(name)(16)
    x = torch.randn(2, 16, 4, 4)
    assert layer(x).shape == x.shape
    layer.eval()
    assert layer(x).shape == x.shape


def test_special_names():
    assert get_norm_layer("none") is None
    assert get_norm_layer(nn.BatchNorm2d) is nn.BatchNorm2d
    assert get_norm_layer("gn4")(16).num_groups == 4
    with pytest.raises(ModelError, match="unknown norm 'bnc'.*choose from"):
        get_norm_layer("bnc")
    with pytest.raises(ModelError, match="dividing"):
        get_norm_layer("gn5")(16)
    assert get_conv_layer("ws") is WSConv2d and get_conv_layer("conv") is Conv2d
    assert issubclass(Conv2d, nn.Conv2d)
    assert get_act_layer("relu") is nn.ReLU
    with pytest.raises(ModelError, match="unknown conv"):
        get_conv_layer("deformable")


def test_public_exports():
    for name in layers.__all__:
        assert hasattr(layers, name), name
