"""Residual: identity vs projection shortcuts, output shapes, errors."""

import pytest
import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers import GroupNorm, Residual


def branch(c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out))


def test_identity_when_shapes_match():
    f = branch(8, 8)
    r = Residual(f, in_channels=8, out_channels=8)
    assert isinstance(r.shortcut, nn.Identity)
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(r(x), f(x) + x)
    assert isinstance(Residual(branch(8, 8)).shortcut, nn.Identity)  # channels unknown


@pytest.mark.parametrize("c_in, c_out, stride", [(8, 16, 1), (8, 8, 2), (8, 16, 2), (4, 2, 2)])
def test_projection_shapes(c_in, c_out, stride):
    r = Residual(branch(c_in, c_out, stride), in_channels=c_in, out_channels=c_out,
                 stride=stride)
    conv, norm = r.shortcut
    assert conv.kernel_size == (1, 1) and conv.stride == (stride, stride)
    assert (conv.in_channels, conv.out_channels) == (c_in, c_out)
    assert conv.bias is None and isinstance(norm, nn.BatchNorm2d)
    x = torch.randn(2, c_in, 8, 8)
    assert r(x).shape == (2, c_out, 8 // stride, 8 // stride)
    assert torch.allclose(r(x), r.branch(x) + r.shortcut(x))


def test_projection_options():
    r = Residual(branch(8, 8), projection="conv", in_channels=8)
    assert isinstance(r.shortcut, nn.Sequential)
    r = Residual(branch(8, 16), "conv", 8, 16, norm_layer=None)
    assert len(r.shortcut) == 1 and r.shortcut[0].bias is not None
    r = Residual(branch(8, 16), "auto", 8, 16, norm_layer="gn")
    assert isinstance(r.shortcut[1], GroupNorm)
    r = Residual(branch(8, 16), "none", 8, 16)
    assert isinstance(r.shortcut, nn.Identity)
    with pytest.raises(ModelError, match="does not match the shortcut"):
        r(torch.randn(1, 8, 4, 4))
    with pytest.raises(ModelError, match="projection must be"):
        Residual(branch(8, 8), projection="yes")
    with pytest.raises(ModelError, match="needs in_channels"):
        Residual(branch(8, 8), projection="conv")


def test_activation_and_drop_path():
    r = Residual(branch(4, 4), act_layer=nn.ReLU)
    x = torch.randn(3, 4, 5, 5)
    assert (r(x) >= 0).all()
    r = Residual(nn.Identity(), act_layer="relu", drop_path=1.0)
    assert torch.equal(r(x), x.relu())  # branch always dropped in training
    r.eval()
    assert torch.equal(r(x), (2 * x).relu())
    assert "projection=auto" in repr(r)
