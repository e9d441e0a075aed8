"""GlobalAvgPool2d: nn.AdaptiveAvgPool2d(1)'s values, its gradient in the input's layout."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.layers import GlobalAvgPool2d

CL = torch.channels_last


def _pooled_grad(pool: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Output, input gradient, and the gradient the max-pool below the pool received."""
    x = x.clone().requires_grad_()
    h = F.max_pool2d(x, 2)  # (B, C, H/2, W/2)
    out = pool(h)
    seen = []
    h.register_hook(seen.append)  # registered after the pool's own hook: sees its result
    (out.flatten(1) * torch.arange(1.0, out.shape[1] + 1)).sum().backward()
    return out, x.grad, seen


def test_same_values_gradient_channels_last():
    x = torch.randn(4, 6, 8, 8, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=CL)
    out, grad, seen = _pooled_grad(GlobalAvgPool2d(), x)
    ref_out, ref_grad, ref_seen = _pooled_grad(nn.AdaptiveAvgPool2d(1), x)
    assert out.shape == (4, 6, 1, 1)
    assert torch.equal(out, ref_out) and torch.equal(grad, ref_grad)
    assert torch.equal(seen[0], ref_seen[0])
    assert seen[0].is_contiguous(memory_format=CL) and not seen[0].is_contiguous()
    assert not ref_seen[0].is_contiguous(memory_format=CL)  # what the plain pool hands down
    assert grad.is_contiguous(memory_format=CL)


def test_nchw_input_untouched():
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    _, grad, seen = _pooled_grad(GlobalAvgPool2d(), x)
    _, ref_grad, ref_seen = _pooled_grad(nn.AdaptiveAvgPool2d(1), x)
    assert torch.equal(grad, ref_grad)
    assert seen[0].stride() == ref_seen[0].stride()


@pytest.mark.parametrize("bf16", [False, True])
def test_training_bit_identical_to_adaptive_pool(bf16):
    """Three Adam steps of a channels-last VGG 1x1 give the same weights with either pool."""
    def train(pool: nn.Module) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = cnnlab.create_model("vgg", blocks=1, layers=1, width=8)
        assert isinstance(model.pool[0], GlobalAvgPool2d)  # the heads' default
        model.pool[0] = pool
        model = model.to(memory_format=CL)
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        g = torch.Generator().manual_seed(2)
        for _ in range(3):
            x = torch.randn(16, 3, 16, 16, generator=g).contiguous(memory_format=CL)
            y = torch.randint(0, 10, (16,), generator=g)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach() for p in model.parameters()]

    new, old = train(GlobalAvgPool2d()), train(nn.AdaptiveAvgPool2d(1))
    assert all(torch.equal(a, b) for a, b in zip(new, old))


def test_under_torch_func():
    pool = GlobalAvgPool2d()

    def f(x):
        return pool(F.max_pool2d(x, 2)).sum()

    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=CL)
    g = torch.func.grad(f)(x)
    xs = x.clone().requires_grad_()
    f(xs).backward()
    assert torch.equal(g, xs.grad)
    assert torch.func.vmap(torch.func.grad(f))(torch.randn(3, 2, 4, 8, 8)).shape == (3, 2, 4, 8, 8)
