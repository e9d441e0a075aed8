"""Conv2d's dense-matrix path for maps smaller than the kernel computes nn.Conv2d's function."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from cnnlab.layers import (
    Conv2d,
    DropConnectConv2d,
    WSConv2d,
    small_map_conv2d,
    standardize_weight,
    stock_convs,
)
from cnnlab.layers.conv import tap_index
from cnnlab.models.vgg import vgg

# (map H, W, kernel, padding): every case has fewer pixels than taps; on 1x3 and 2x3 maps
# some pixels lie outside some output pixels' 3x3 windows (the zero tap)
SMALL = [(2, 2, 3, 1), (1, 1, 3, 1), (2, 1, 3, 1), (3, 3, 5, 2), (2, 2, 3, 0), (1, 2, 5, 2),
         (1, 3, 3, 1), (2, 3, 3, 1)]


def pair(c_in=6, c_out=5, kernel=3, padding=1, bias=True, seed=0):
    """A cnnlab Conv2d and an nn.Conv2d with the same weights, in float64."""
    torch.manual_seed(seed)
    ours = Conv2d(c_in, c_out, kernel, padding=padding, bias=bias).double()
    stock = nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=bias).double()
    stock.load_state_dict(ours.state_dict())
    return ours, stock


@pytest.mark.parametrize("h,w,k,pad", SMALL)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_small_map_matches_conv2d_forward_and_gradients(h, w, k, pad, bias, fmt):
    if h + 2 * pad < k or w + 2 * pad < k:
        pytest.skip("no output pixel")
    weight = torch.randn(5, 6, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True) if bias else None
    x = torch.randn(4, 6, h, w, dtype=torch.float64).to(memory_format=fmt).requires_grad_()
    want = F.conv2d(x, weight, b, padding=pad)
    got = small_map_conv2d(x, weight, b, (pad, pad))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    inputs = [x, weight] + ([b] if bias else [])
    torch.testing.assert_close(torch.autograd.grad(got, inputs, g),
                               torch.autograd.grad(want, inputs, g))


def test_tap_index_of_a_2x2_map_uses_the_4_taps_each_output_pixel_sees():
    index = tap_index(2, 2, 3, 3, 1, 1)
    assert index.shape == (4, 4)
    # output pixel (0, 0) sees input (0, 0) through the centre tap 4, (1, 1) through tap 8
    assert index[0].tolist() == [4, 5, 7, 8]
    assert index[3].tolist() == [0, 1, 3, 4]
    assert (tap_index(3, 3, 3, 3, 0, 0) == torch.arange(9)).all()  # one output, all taps


def test_conv2d_takes_the_path_only_where_the_map_is_smaller_than_the_kernel():
    conv = Conv2d(4, 4, 3, padding=1)
    assert conv.uses_small_map_path(torch.zeros(1, 4, 2, 2))
    assert conv.uses_small_map_path(torch.zeros(1, 4, 1, 1))
    assert not conv.uses_small_map_path(torch.zeros(1, 4, 3, 3))  # 9 pixels, 9 taps
    assert not conv.uses_small_map_path(torch.zeros(1, 4, 4, 4))
    assert not conv.uses_small_map_path(torch.zeros(4, 2, 2))  # unbatched
    for other in (Conv2d(4, 4, 3, stride=2, padding=1), Conv2d(4, 4, 3, padding=1, groups=2),
                  Conv2d(4, 4, 3, padding=1, dilation=2), Conv2d(4, 4, 3, padding="same"),
                  Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), Conv2d(4, 4, 1)):
        assert not other.uses_small_map_path(torch.zeros(1, 4, 2, 2)), other


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_conv2d_is_nn_conv2d_with_the_same_state_dict(size):
    ours, stock = pair()
    assert ours.state_dict().keys() == stock.state_dict().keys()
    x = torch.randn(3, 6, size, size, dtype=torch.float64)
    torch.testing.assert_close(ours(x), stock(x))


def test_a_map_too_small_for_an_unpadded_kernel_keeps_torchs_error():
    ours, stock = pair(padding=0)
    x = torch.randn(1, 6, 2, 2, dtype=torch.float64)
    with pytest.raises(RuntimeError) as stock_error:
        stock(x)
    with pytest.raises(RuntimeError) as our_error:
        ours(x)
    assert str(our_error.value) == str(stock_error.value)


def test_bf16_autocast_stays_within_bf16_rounding_of_the_convolution():
    torch.manual_seed(0)
    conv = Conv2d(64, 32, 3, padding=1)
    x = torch.randn(8, 64, 2, 2).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = conv(x)
        want = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), atol=0.05, rtol=0.02)


def test_subclasses_take_the_path_with_their_own_kernel():
    torch.manual_seed(0)
    ws = WSConv2d(6, 5, 3, padding=1).double()
    x = torch.randn(2, 6, 2, 2, dtype=torch.float64)
    assert ws.uses_small_map_path(x)
    torch.testing.assert_close(ws(x), F.conv2d(x, standardize_weight(ws.weight, ws.eps),
                                                 ws.bias, padding=1))
    dc = DropConnectConv2d(6, 5, 3, padding=1, p=0.5).double().eval()  # eval: no mask
    torch.testing.assert_close(dc(x), F.conv2d(x, dc.weight, dc.bias, padding=1))


def test_vmap_over_stacked_weights_matches_each_model_alone():
    models = [pair(seed=s)[0] for s in range(3)]
    params, buffers = stack_module_state(models)
    x = torch.randn(3, 4, 6, 2, 2, dtype=torch.float64)  # (R, B, C, H, W)

    def forward(p, b, xi):
        return functional_call(models[0], (p, b), (xi,))

    out = vmap(forward)(params, buffers, x)
    for r, model in enumerate(models):
        torch.testing.assert_close(out[r], F.conv2d(x[r], model.weight, model.bias, padding=1))


def test_stock_convs_gives_plain_pytorch_with_the_same_outputs():
    torch.manual_seed(0)
    model = vgg(blocks=5, layers=1, width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    assert any(type(m) is Conv2d for m in model.modules())
    stock_convs(model)
    assert not any(isinstance(m, Conv2d) for m in model.modules())
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-4)
