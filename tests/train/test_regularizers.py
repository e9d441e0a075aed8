"""Penalties against autograd of the written formulas; proximal L1; sparsity report;
coupled L2 vs decoupled weight decay under SGD and Adam."""

import math

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.train.regularizers import (
    format_sparsity,
    penalized_weights,
    penalty,
    proximal_l1_,
    sparsity_report,
)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4, 4),
    )


def formula(conv_w, lin_w, l1, l2, gl, group_by="output"):
    """The documented penalty, written out group by group (independent of the library)."""
    total = torch.zeros((), dtype=conv_w.dtype)
    for w in (conv_w, lin_w):
        total = total + l2 / 2 * (w * w).sum() + l1 * w.abs().sum()
        units = w.shape[0] if group_by == "output" else w.shape[1]
        for u in range(units):
            g = (w[u] if group_by == "output" else w[:, u]).reshape(-1)
            total = total + gl * math.sqrt(g.numel()) * torch.sqrt((g * g).sum())
    return total


@pytest.mark.parametrize("group_by", ["output", "input"])
def test_penalty_value_and_gradient_vs_formula(group_by):
    model = small_model()
    conv, lin = model[0], model[4]
    l1, l2, gl = 1e-2, 3e-2, 5e-2
    p = penalty(model, l1=l1, l2=l2, group_lasso=gl, group_by=group_by)
    p.backward()
    grads = (conv.weight.grad.clone(), lin.weight.grad.clone())
    assert conv.bias.grad is None and model[1].weight.grad is None  # biases, norms excluded

    cw = conv.weight.detach().clone().requires_grad_()
    lw = lin.weight.detach().clone().requires_grad_()
    ref = formula(cw, lw, l1, l2, gl, group_by)
    ref.backward()
    assert torch.allclose(p, ref, rtol=1e-5)
    assert torch.allclose(grads[0], cw.grad, atol=1e-6)
    assert torch.allclose(grads[1], lw.grad, atol=1e-6)

    # and the closed-form gradient: l2 w + l1 sign(w) + gl sqrt(n) w_g / ||w_g||
    w = lin.weight.detach()
    g = w if group_by == "output" else w.t()
    n = g.shape[1]
    gl_grad = gl * math.sqrt(n) * g / g.norm(dim=1, keepdim=True)
    analytic = l2 * w + l1 * w.sign() + (gl_grad if group_by == "output" else gl_grad.t())
    assert torch.allclose(grads[1], analytic, atol=1e-6)


def test_penalty_zero_and_errors():
    model = small_model()
    z = penalty(model)
    assert z.item() == 0.0 and not z.requires_grad
    assert [n for n, _, _ in penalized_weights(model)] == ["0", "4"]
    with pytest.raises(ConfigError, match="l2"):
        penalty(model, l2=-1.0)
    with pytest.raises(ConfigError, match="group_by"):
        penalty(model, group_lasso=1.0, group_by="rows")


def test_proximal_l1_soft_thresholds():
    model = small_model()
    lin = model[4]
    before = lin.weight.detach().clone()
    bias = lin.bias.detach().clone()
    proximal_l1_(model, lr=0.1, l1=0.5)  # threshold 0.05
    expected = torch.sign(before) * (before.abs() - 0.05).clamp_min(0)
    assert torch.equal(lin.weight, expected)
    assert torch.equal(lin.bias, bias)  # biases untouched
    zeros = sum(int((w == 0).sum()) for _, _, w in penalized_weights(model))
    assert zeros > 0 and sparsity_report(model, threshold=1e-30)["total"]["zero_weights"] == zeros


def test_proximal_l1_gives_exact_zeros_where_penalty_does_not():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 20, generator=g)
    true_w = torch.zeros(1, 20)
    true_w[0, :3] = torch.tensor([2.0, -1.5, 1.0])
    y = x @ true_w.t() + 0.01 * torch.randn(256, 1, generator=g)

    def fit(proximal: bool) -> torch.Tensor:
        torch.manual_seed(1)
        model = nn.Linear(20, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(100):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            if not proximal:
                loss = loss + penalty(model, l1=0.05)
            loss.backward()
            opt.step()
            if proximal:
                proximal_l1_(model, lr=0.1, l1=0.05)
        return model.weight.detach()

    prox, sub = fit(True), fit(False)
    assert int((prox[0, 3:] == 0).sum()) == 17  # every irrelevant weight exactly zero
    assert (prox[0, :3] != 0).all()
    assert int((sub == 0).sum()) == 0  # the subgradient only makes them small
    assert sub[0, 3:].abs().max() < 0.05


def test_sparsity_report():
    model = small_model()
    conv, lin = model[0], model[4]
    with torch.no_grad():
        lin.weight[:2] = 0.0  # two whole neurons
        lin.weight[2, :6] = 1e-4  # half of a third one
        conv.weight[0] = 5e-4  # one whole filter, below the threshold
    rep = sparsity_report(model, threshold=1e-3)
    lrow, crow = rep["layers"]["4"], rep["layers"]["0"]
    assert (lrow["weights"], lrow["zero_weights"], lrow["units"], lrow["zero_units"]) == \
        (48, 30, 4, 2)
    assert lrow["weight_fraction"] == 30 / 48 and lrow["unit_fraction"] == 0.5
    assert (crow["weights"], crow["zero_weights"], crow["zero_units"]) == (54, 18, 1)
    tot = rep["total"]
    assert (tot["weights"], tot["zero_weights"], tot["units"], tot["zero_units"]) == \
        (102, 48, 7, 3)
    assert tot["unit_fraction"] == 3 / 7
    text = format_sparsity(rep)
    assert "total" in text and "62.5%" in text


# --- coupled L2 penalty vs decoupled weight decay -------------------------------------


def run(make_opt, steps=10, l2=0.0, decoupled=None, seed=0, loss_scale=1.0):
    """Train a small linear model on a fixed batch; return its final parameters.

    l2: coupled penalty in the loss; decoupled: (lr, wd) for a manual
    ``w *= 1 - lr * wd`` before each optimizer step (the AdamW / SGDW decay).
    """
    torch.manual_seed(seed)
    model = nn.Linear(5, 3, bias=False)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 5, generator=g), torch.randn(32, 3, generator=g)
    opt = make_opt(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_scale * nn.functional.mse_loss(model(x), y) + penalty(model, l2=l2)
        loss.backward()
        if decoupled is not None:
            lr, wd = decoupled
            with torch.no_grad():
                model.weight.mul_(1 - lr * wd)
        opt.step()
    return model.weight.detach()


LR, WD = 0.05, 0.1


def test_sgd_weight_decay_equals_l2_penalty():
    sgd = lambda **kw: (lambda p: torch.optim.SGD(p, lr=LR, **kw))  # noqa: E731
    builtin = run(sgd(weight_decay=WD))
    coupled = run(sgd(), l2=WD)  # penalty(l2=wd) == wd/2 * ||w||^2
    decoupled = run(sgd(), decoupled=(LR, WD))
    assert torch.allclose(builtin, coupled, atol=1e-6)
    assert torch.allclose(builtin, decoupled, atol=1e-6)  # plain SGD: the same update
    # rescaling: a per-step shrink factor d is weight decay d / lr
    d = LR * WD
    assert torch.allclose(run(sgd(), decoupled=(1.0, d)), builtin, atol=1e-6)
    # with momentum, SGD's weight_decay is still exactly the L2 penalty
    mom = run(sgd(weight_decay=WD, momentum=0.9))
    assert torch.allclose(mom, run(sgd(momentum=0.9), l2=WD), atol=1e-6)
    assert not torch.allclose(run(sgd(), l2=0.0), builtin, atol=1e-3)  # decay matters


def test_adam_l2_penalty_differs_from_adamw():
    adam = lambda **kw: (lambda p: torch.optim.Adam(p, lr=LR, **kw))  # noqa: E731
    coupled = run(adam(), l2=WD)
    assert torch.allclose(coupled, run(adam(weight_decay=WD)), atol=1e-6)  # Adam's own = L2
    adamw = run(lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=WD))
    assert torch.allclose(adamw, run(adam(), decoupled=(LR, WD)), atol=1e-6)  # AdamW = decoupled
    assert (adamw - coupled).abs().max() > 1e-3  # ... and the two differ under Adam
    # Adam normalizes the gradient, so how much the coupled L2 term decays depends on the
    # scale of the loss gradient; the decoupled decay does not (lr * wd * w every step)
    adamw_big = run(lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=WD), loss_scale=100.0)
    assert torch.allclose(adamw_big, adamw, atol=1e-5)
    coupled_big = run(adam(), l2=WD, loss_scale=100.0)
    assert (coupled_big - coupled).abs().max() > 1e-2
