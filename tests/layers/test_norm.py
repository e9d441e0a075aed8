"""Normalization layers against independent references (F.layer_norm, hand formulas)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers import (
    BatchChannelNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    LayerNorm2d,
    LayerNormCHW,
    WSConv2d,
    default_groups,
    standardize_weight,
)

B, C, H, W = 2, 3, 4, 5


def data(seed=0, shape=(B, C, H, W)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 3 + 1


def randomize(m: nn.Module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize(
    "axis, perm",
    [
        ((1,), (0, 2, 3, 1)),  # channels at each pixel
        ((-3,), (0, 2, 3, 1)),
        ((1, 2, 3), (0, 1, 2, 3)),  # the whole map
        ((-2, -1), (0, 1, 2, 3)),  # each channel's plane
        ((1, 3), (0, 2, 1, 3)),  # non-contiguous axes
        ((-1, -2), (0, 1, 3, 2)),  # parameters laid out (W, H)
    ],
)
def test_layernorm_axis_vs_permute_and_f_layer_norm(axis, perm):
    x = data()
    shape = tuple(x.shape[a] for a in axis)
    ln = randomize(LayerNorm(shape, axis=axis))
    # reference: move the normalized axes last, in the order of `axis`, then F.layer_norm
    ref = F.layer_norm(x.permute(perm), shape, ln.weight, ln.bias, ln.eps)
    inverse = tuple(np.argsort(perm))
    assert torch.allclose(ln(x), ref.permute(inverse), atol=1e-5)


def keras_layer_norm(x: np.ndarray, axes: tuple, gamma: np.ndarray, beta: np.ndarray,
                     eps: float) -> np.ndarray:
    """Keras' formula, by hand in float64: per sample, mean and variance over `axes`,
    (x - mean) / sqrt(var + eps) * gamma + beta with gamma broadcast along `axes`."""
    out = np.empty_like(x)
    other = [d for d in range(1, x.ndim) if d not in axes]
    for b in range(x.shape[0]):
        for idx in np.ndindex(*[x.shape[d] for d in other]):
            sl = [b] + [slice(None)] * (x.ndim - 1)
            for d, i in zip(other, idx):
                sl[d] = i
            v = x[tuple(sl)]  # the normalized axes, in tensor order
            n = v.size
            mean = v.sum() / n
            var = ((v - mean) ** 2).sum() / n
            out[tuple(sl)] = (v - mean) / np.sqrt(var + eps) * gamma + beta
    return out


@pytest.mark.parametrize("axis", [(1,), (1, 2, 3), (2, 3), (1, 3)])
def test_layernorm_vs_hand_keras_formula(axis):
    x = data(3)
    shape = tuple(x.shape[a] for a in axis)
    ln = randomize(LayerNorm(shape, axis=axis, eps=1e-3), seed=4)
    ref = keras_layer_norm(x.double().numpy(), axis, ln.weight.detach().double().numpy(),
                           ln.bias.detach().double().numpy(), 1e-3)
    assert np.allclose(ln(x).detach().numpy(), ref, atol=1e-5)


def test_keras_channels_last_mapping():
    """Keras LayerNormalization(axis=[1, 2, 3]) on (B, H, W, C) with gamma (H, W, C) equals
    LayerNorm((C, H, W), axis=(1, 2, 3)) on (B, C, H, W) with gamma.permute(2, 0, 1)."""
    x_nhwc = data(5).permute(0, 2, 3, 1).contiguous()  # (B, H, W, C)
    g = torch.Generator().manual_seed(6)
    gamma, beta = torch.randn(H, W, C, generator=g), torch.randn(H, W, C, generator=g)
    keras = keras_layer_norm(x_nhwc.double().numpy(), (1, 2, 3), gamma.double().numpy(),
                             beta.double().numpy(), 1e-3)
    ln = LayerNorm((C, H, W), axis=(1, 2, 3), eps=1e-3)
    with torch.no_grad():
        ln.weight.copy_(gamma.permute(2, 0, 1))
        ln.bias.copy_(beta.permute(2, 0, 1))
    ours = ln(x_nhwc.permute(0, 3, 1, 2)).detach()  # (B, C, H, W)
    assert np.allclose(ours.permute(0, 2, 3, 1).numpy(), keras, atol=1e-5)
    # and Keras axis=-1 (channels) is axis=1 here
    ln_c = LayerNorm(C, axis=1, eps=1e-3)
    keras_c = keras_layer_norm(x_nhwc.double().numpy(), (3,), np.ones(C), np.zeros(C), 1e-3)
    assert np.allclose(ln_c(x_nhwc.permute(0, 3, 1, 2)).detach().permute(0, 2, 3, 1).numpy(),
                       keras_c, atol=1e-5)


def test_layernorm_parameters_and_negative_axes():
    ln = LayerNorm((C, H, W), axis=(1, 2, 3))
    assert sum(p.numel() for p in ln.parameters()) == 2 * C * H * W
    neg = LayerNorm((C, H, W), axis=(-3, -2, -1))
    x = data(7)
    randomize(ln)
    neg.load_state_dict(ln.state_dict())
    assert torch.allclose(ln(x), neg(x), atol=1e-6)
    assert LayerNorm(5).axis == (-1,)
    assert "axis=(1, 2, 3)" in repr(ln)
    plain = LayerNorm((H, W), axis=(2, 3), elementwise_affine=False)
    assert not list(plain.parameters())
    y = plain(x)
    assert torch.allclose(y.mean((2, 3)), torch.zeros(B, C), atol=1e-5)


def test_layernorm_low_precision_and_errors():
    x = data(8)
    ln = LayerNorm(C, axis=1)
    y16 = ln(x.bfloat16())
    assert y16.dtype == torch.bfloat16
    assert torch.allclose(y16.float(), ln(x), atol=0.05)
    with pytest.raises(ModelError, match="expects sizes"):
        LayerNorm(7, axis=1)(x)
    with pytest.raises(ModelError, match="batch axis"):
        LayerNorm(B, axis=0)(x)
    with pytest.raises(ModelError, match="out of range"):
        LayerNorm(C, axis=4)(x)
    with pytest.raises(ModelError, match="one size per"):
        LayerNorm((C, H), axis=1)


def test_layernorm2d_is_channel_layernorm():
    x = data(9)
    a = randomize(LayerNorm2d(C))
    b = LayerNorm(C, axis=1, eps=a.eps)
    b.load_state_dict(a.state_dict())
    assert torch.allclose(a(x), b(x), atol=1e-5)


def test_groupnorm_one_group_equals_layernorm_chw():
    x = data(10)
    gn = GroupNorm(C, num_groups=1, affine=False)
    ln = LayerNorm((C, H, W), axis=(1, 2, 3), elementwise_affine=False)
    assert torch.allclose(gn(x), ln(x), atol=1e-5)
    assert torch.allclose(LayerNormCHW(C, affine=False)(x), ln(x), atol=1e-5)
    assert repr(LayerNormCHW(C)) == "LayerNormCHW(3, eps=1e-05, affine=True)"


def test_group_defaults_and_instance_norm():
    assert [default_groups(c) for c in (1, 3, 16, 32, 48, 64, 256)] == [1, 1, 8, 16, 24, 32, 32]
    assert GroupNorm(64).num_groups == 32
    with pytest.raises(ModelError, match="dividing"):
        GroupNorm(10, num_groups=4)
    x = data(11, (2, 4, 5, 5))
    inorm = randomize(InstanceNorm(4))
    assert inorm.affine
    gn = GroupNorm(4, num_groups=4)
    gn.load_state_dict(inorm.state_dict())
    assert torch.allclose(inorm(x), gn(x), atol=1e-5)


def test_ws_conv():
    torch.manual_seed(0)
    conv = WSConv2d(3, 4, 3, padding=1)
    w = standardize_weight(conv.weight)
    assert torch.allclose(w.mean((1, 2, 3)), torch.zeros(4), atol=1e-6)
    assert torch.allclose(w.var((1, 2, 3), correction=0), torch.ones(4), atol=1e-3)
    x = data(12, (2, 3, 6, 6))
    wt = conv.weight.detach()
    mean = wt.mean((1, 2, 3), keepdim=True)
    std = (((wt - mean) ** 2).mean((1, 2, 3), keepdim=True) + 1e-5).sqrt()
    ref = F.conv2d(x, (wt - mean) / std, conv.bias, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-5)
    assert "eps=1e-05" in repr(conv)
    # invariant to a positive rescaling and a shift of each filter (up to eps)
    conv.eps = 1e-12
    y = conv(x)
    with torch.no_grad():
        conv.weight.mul_(3.0).add_(torch.randn(4, 1, 1, 1))
    assert torch.allclose(conv(x), y, atol=1e-4)


def test_batch_channel_norm():
    x = data(13, (4, 8, 3, 3))
    bcn = BatchChannelNorm(8, num_groups=2)
    y = bcn(x)
    mean = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), correction=0, keepdim=True)
    xb = (x - mean) / (var + 1e-5).sqrt()  # batch part (identity affine)
    g = xb.reshape(4, 2, -1)
    ref = ((g - g.mean(2, keepdim=True)) / (g.var(2, correction=0, keepdim=True) + 1e-5).sqrt())
    assert torch.allclose(y, ref.reshape_as(x), atol=1e-4)
    assert torch.allclose(bcn.bn.running_mean, 0.1 * mean.flatten(), atol=1e-5)
    bcn.eval()
    assert bcn(x).shape == x.shape
    est = BatchChannelNorm(8, estimate=True)
    est(x)  # training: updates the estimates, normalizes with them
    assert torch.allclose(est.bn.running_mean, 0.1 * mean.flatten(), atol=1e-5)
    assert "num_groups=4" in repr(est)
