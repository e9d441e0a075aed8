"""Dropout family: Monte Carlo expectations in training, exact outputs at inference."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.layers import (
    Cutout,
    DropConnect,
    DropConnectConv2d,
    DropConnectLinear,
    Dropout,
    DropPath,
    SpatialDropout,
    cutout,
    drop_connect,
    drop_path,
    dropout,
    spatial_dropout,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mode", ["inverted", "standard"])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_expectation_matches_inference(mode, p):
    x = torch.randn(6, 5, generator=gen(1))
    n = 20000
    xs = x.expand(n, 6, 5).contiguous()  # n independent draws of the same input
    y = dropout(xs, p, True, mode=mode, generator=gen(2))
    infer = dropout(x, p, False, mode=mode)
    # both modes: E[training output] == inference output
    sd = x.abs() * (p / (1 - p)) ** 0.5 / n**0.5  # std of the mean (inverted; standard less)
    assert ((y.mean(0) - infer).abs() <= 5 * sd).all()
    kept = (y != 0).float().mean().item()
    assert abs(kept - (1 - p)) < 0.01
    # kept units are scaled by 1/(1-p) (inverted) or not at all (standard)
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    mask = y != 0
    assert torch.allclose(y[mask], (xs * scale)[mask])


def test_dropout_inference_exact():
    x = torch.randn(4, 7, generator=gen(0))
    assert torch.equal(dropout(x, 0.3, False, mode="inverted"), x)
    assert torch.equal(dropout(x, 0.3, False, mode="standard"), x * 0.7)
    m = Dropout(0.3, mode="standard").eval()
    assert torch.equal(m(x), x * 0.7)
    assert torch.equal(Dropout(0.3).eval()(x), x)


def test_dropout_module_switches_with_train_eval_and_repr():
    m = Dropout(0.5, generator=gen(0))
    x = torch.ones(1000)
    assert (m(x) == 0).any()  # training by default
    m.eval()
    assert torch.equal(m(x), x)
    m.train()
    assert (m(x) == 0).any()
    assert repr(m) == "Dropout(p=0.5, mode=inverted)"
    model = nn.Sequential(nn.Linear(3, 3), Dropout(0.5, mode="standard"))
    model.eval()
    assert not model[1].training


def test_dropout_edges_and_errors():
    x = torch.randn(10)
    assert torch.equal(dropout(x, 0.0, True), x)
    assert torch.equal(dropout(x, 1.0, True), torch.zeros(10))
    assert torch.equal(dropout(x, 1.0, True, mode="standard"), torch.zeros(10))
    with pytest.raises(ModelError, match="p must be"):
        Dropout(1.5)
    with pytest.raises(ModelError, match="mode"):
        Dropout(0.5, mode="scaled")
    with pytest.raises(ModelError, match="p must be"):
        dropout(x, -0.1)


def test_generator_reproducible():
    x = torch.randn(8, 8)
    a = dropout(x, 0.5, True, generator=gen(3))
    b = dropout(x, 0.5, True, generator=gen(3))
    c = dropout(x, 0.5, True, generator=gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("mode", ["inverted", "standard"])
def test_spatial_dropout_drops_whole_channels(mode):
    p = 0.3
    x = torch.rand(400, 8, 5, 5) + 1.0  # no zeros in the input
    y = spatial_dropout(x, p, True, mode=mode, generator=gen(0))
    zero = (y == 0).flatten(2)  # (B, C, H*W)
    assert torch.equal(zero.all(2), zero.any(2))  # each plane all-zero or untouched
    assert abs(zero.all(2).float().mean().item() - p) < 0.03
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    keep = ~zero.all(2)
    assert torch.allclose(y[keep], x[keep] * scale)
    m = SpatialDropout(p, mode=mode).eval()
    assert torch.equal(m(x), x if mode == "inverted" else x * (1 - p))
    assert "p=0.3" in repr(m)


def test_drop_path_per_sample():
    p = 0.25
    x = torch.rand(2000, 3, 2, 2) + 1.0
    y = drop_path(x, p, True, generator=gen(0))
    zero = (y == 0).flatten(1)
    assert torch.equal(zero.all(1), zero.any(1))  # whole samples
    assert abs(zero.all(1).float().mean().item() - p) < 0.03
    assert torch.allclose(y[~zero.all(1)], x[~zero.all(1)] / (1 - p))
    m = DropPath(p).eval()
    assert torch.equal(m(x), x)
    assert torch.equal(DropPath(p, mode="standard").eval()(x), x * (1 - p))
    assert torch.equal(drop_path(x, 0.0, True), x)


def test_cutout_square_per_sample_all_channels():
    b, c, h, w, s = 64, 3, 12, 12, 4
    x = torch.rand(b, c, h, w) + 1.0
    y = cutout(x, s, True, generator=gen(0))
    hole = y == 0  # (B, C, H, W)
    assert torch.equal(hole, hole[:, :1].expand_as(hole))  # same patch in every channel
    plane = hole[:, 0]
    positions = set()
    full = 0
    for i in range(b):  # check each sample's hole is one clipped square (test-side loop)
        rows = plane[i].any(1).nonzero().flatten()
        cols = plane[i].any(0).nonzero().flatten()
        assert len(rows) >= 1 and len(cols) >= 1  # centre is inside, so never empty
        assert rows.max() - rows.min() + 1 == len(rows) <= s
        assert cols.max() - cols.min() + 1 == len(cols) <= s
        assert plane[i].sum() == len(rows) * len(cols)  # a filled rectangle
        full += len(rows) == s and len(cols) == s
        positions.add((rows.min().item(), cols.min().item()))
    assert full > b // 3 and len(positions) > b // 4  # mostly whole squares, per-sample spots
    assert torch.equal(y[~hole], x[~hole])
    m = Cutout(s).eval()
    assert torch.equal(m(x), x)
    assert repr(Cutout(0.25, p=0.5)) == "Cutout(size=0.25, p=0.5)"


def test_cutout_fraction_and_probability():
    x = torch.ones(1000, 1, 8, 8)
    y = cutout(x, 0.5, True, p=0.3, generator=gen(1))  # 4x4 patches on 30% of samples
    hit = (y == 0).flatten(1).any(1).float().mean().item()
    assert abs(hit - 0.3) < 0.05
    assert (y == 0).flatten(1).sum(1).max() == 16
    with pytest.raises(ModelError, match="cutout size"):
        Cutout(1.5)
    with pytest.raises(ModelError, match=r"\(B, C, H, W\)"):
        cutout(torch.ones(3, 4), 2)


@pytest.mark.parametrize("mode", ["inverted", "standard"])
def test_drop_connect_rate_and_expected_weights(mode):
    p = 0.4
    w = torch.randn(200, 100, generator=gen(0))
    wd = drop_connect(w, p, True, mode=mode, generator=gen(1))
    assert abs((wd == 0).float().mean().item() - p) < 0.01  # mask rate
    g = gen(2)
    n = 2000
    mean = sum(drop_connect(w[:20, :10], p, True, mode=mode, generator=g) for _ in range(n)) / n
    expected = drop_connect(w[:20, :10], p, False, mode=mode)  # inference weights
    assert torch.equal(expected, w[:20, :10] if mode == "inverted" else w[:20, :10] * (1 - p))
    assert torch.allclose(mean, expected, atol=0.15)


def test_drop_connect_linear_train_and_eval():
    torch.manual_seed(0)
    layer = DropConnectLinear(5, 3, p=0.5, mode="standard", generator=gen(7))
    x = torch.randn(4, 5)
    y = layer(x)
    w = drop_connect(layer.weight, 0.5, True, mode="standard", generator=gen(7))
    assert torch.allclose(y, F.linear(x, w, layer.bias))  # masked weights, unmasked bias
    assert not torch.equal(layer(x), y)  # a fresh mask per forward
    layer.eval()
    assert torch.allclose(layer(x), F.linear(x, 0.5 * layer.weight, layer.bias))
    # gradient reaches only the kept weights
    layer.train()
    layer.generator = gen(7)
    layer(x).sum().backward()
    assert torch.equal(layer.weight.grad == 0, w == 0)
    assert "p=0.5, mode=standard" in repr(layer)
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_drop_connect_output_expectation():
    torch.manual_seed(0)
    layer = DropConnectLinear(6, 2, p=0.5, generator=gen(1))
    x = torch.randn(3, 6)
    with torch.no_grad():
        mc = sum(layer(x) for _ in range(4000)) / 4000
        exact = layer.eval()(x)
    assert torch.allclose(exact, F.linear(x, layer.weight, layer.bias))
    assert torch.allclose(mc, exact, atol=0.1)


def test_drop_connect_conv_and_wrapper():
    torch.manual_seed(0)
    conv = DropConnectConv2d(3, 4, 3, padding=1, p=0.3, generator=gen(5))
    x = torch.randn(2, 3, 6, 6)
    w = drop_connect(conv.weight, 0.3, True, generator=gen(5))
    assert torch.allclose(conv(x), F.conv2d(x, w, conv.bias, padding=1), atol=1e-6)
    conv.eval()
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-6)
    assert "kernel_size=(3, 3)" in repr(conv) and "p=0.3" in repr(conv)

    inner = nn.Conv2d(3, 4, 3, padding=1)
    wrapped = DropConnect(inner, p=0.3, generator=gen(5))
    w = drop_connect(inner.weight, 0.3, True, generator=gen(5))
    assert torch.allclose(wrapped(x), F.conv2d(x, w, inner.bias, padding=1), atol=1e-6)
    wrapped.eval()
    assert torch.equal(wrapped(x), inner(x))
    std = DropConnect(nn.Linear(4, 2), p=0.5, mode="standard").eval()
    z = torch.randn(3, 4)
    assert torch.allclose(std(z), F.linear(z, 0.5 * std.module.weight, std.module.bias))
    with pytest.raises(ModelError, match="weight"):
        DropConnect(nn.ReLU())
