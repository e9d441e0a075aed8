import math

import pytest
import torch
from torch import nn

from cnnlab.config import OptimConfig, RunConfig
from cnnlab.errors import ConfigError
from cnnlab.train.optim import build_optimizer, build_scheduler, lr_factor, param_groups


def _quadratic_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _step(opt, model, x):
    opt.zero_grad()
    model(x).pow(2).sum().backward()
    opt.step()


def test_norm_and_bias_excluded_from_decay():
    groups = param_groups(_quadratic_model(), 0.1, decay_norm_and_bias=False)
    assert [p.ndim for p in groups[0]["params"]] == [2]  # only the Linear weight decays
    assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == 3


def test_sgd_momentum_nesterov_matches_formula():
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    model = nn.Module()
    model.w = w
    cfg = OptimConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True)
    opt = build_optimizer(model, cfg)
    v = torch.zeros(2)
    ref = w.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
        g = 2 * ref
        v = 0.9 * v + g
        ref = ref - 0.1 * (g + 0.9 * v)  # Nesterov (Sutskever form used by torch)
    assert torch.allclose(w.detach(), ref, atol=1e-6)


def test_adam_matches_formula():
    w = nn.Parameter(torch.tensor([0.5, -1.5]))
    model = nn.Module()
    model.w = w
    opt = build_optimizer(model, OptimConfig(name="adam", lr=0.01))
    m = torch.zeros(2)
    v = torch.zeros(2)
    ref = w.detach().clone()
    for t in range(1, 4):
        opt.zero_grad()
        (w ** 3).sum().backward()
        opt.step()
        g = 3 * ref ** 2
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref = ref - 0.01 * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-8)
    assert torch.allclose(w.detach(), ref, atol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_coupled_vs_decoupled_decay(name):
    """Coupled: g + wd*w goes through the optimizer; decoupled: w *= 1 - lr*wd, separately.
    With zero loss gradient, coupled Adam normalizes the decay term (a step of ~lr per
    coordinate) while decoupled Adam shrinks by exactly lr*wd*w."""
    lr, wd = 0.1, 0.01
    results = {}
    for mode in ("coupled", "decoupled"):
        w = nn.Parameter(torch.tensor([[2.0, -4.0]]))
        model = nn.Module()
        model.w = w
        opt = build_optimizer(model, OptimConfig(name=name, lr=lr, momentum=0.0,
                                                 weight_decay=wd, decay_mode=mode))
        opt.zero_grad()
        (w * 0).sum().backward()  # zero loss gradient: only decay acts
        opt.step()
        results[mode] = w.detach().clone()
    start = torch.tensor([[2.0, -4.0]])
    assert torch.allclose(results["decoupled"], start * (1 - lr * wd))
    if name == "sgd":  # SGD: the two coincide
        assert torch.allclose(results["coupled"], results["decoupled"])
    else:  # Adam, coupled: m/sqrt(v) = sign(w) -> a step of lr per coordinate
        assert torch.allclose(results["coupled"], start - lr * start.sign(), atol=1e-5)


def test_adamw_is_decoupled_by_default():
    model = nn.Linear(2, 2)
    assert isinstance(build_optimizer(model, OptimConfig(name="adamw", weight_decay=0.1)),
                      torch.optim.AdamW)
    adam = build_optimizer(model, OptimConfig(name="adam", weight_decay=0.1))
    assert isinstance(adam, torch.optim.Adam) and not isinstance(adam, torch.optim.AdamW)


def test_schedules_match_formulas():
    spe, total = 10, 100
    c = OptimConfig(schedule="cosine")
    assert lr_factor(c, 0, total, spe) == 1.0
    assert math.isclose(lr_factor(c, 50, total, spe), 0.5)
    assert math.isclose(lr_factor(c, 100, total, spe), 0.0, abs_tol=1e-12)
    s = OptimConfig(schedule="step", step_epochs=3, gamma=0.1)
    assert [lr_factor(s, k, total, spe) for k in (0, 29, 30, 60)] == pytest.approx(
        [1, 1, 0.1, 0.01])
    w = OptimConfig(schedule="warmup-linear", warmup_epochs=2)
    assert lr_factor(w, 0, total, spe) == pytest.approx(1 / 20)
    assert lr_factor(w, 19, total, spe) == pytest.approx(1.0)
    assert lr_factor(w, 60, total, spe) == pytest.approx(0.5)
    wc = OptimConfig(schedule="warmup-cosine", warmup_epochs=2, min_lr_ratio=0.1)
    assert lr_factor(wc, 60, total, spe) == pytest.approx(0.1 + 0.9 * 0.5)
    oc = OptimConfig(schedule="onecycle")
    assert lr_factor(oc, 24, total, spe) == pytest.approx(1.0)  # first quarter ramps up
    assert lr_factor(OptimConfig(), 77, total, spe) == 1.0


def test_scheduler_steps_per_batch():
    model = nn.Linear(2, 2)
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="cosine")
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=4, steps_per_epoch=2)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5,
                                 0.5 + 0.5 * math.cos(3 * math.pi / 4)])


def test_unknown_optimizer_and_schedule_are_config_errors():
    with pytest.raises(ConfigError, match="'adma' is not one of .*did you mean 'adam'"):
        RunConfig().set(**{"optim.name": "adma"})
    with pytest.raises(ConfigError, match="optim.schedule"):
        RunConfig().set(**{"optim.schedule": "cosin"})


def test_adam_uses_the_fused_kernel_where_it_can():
    """One fused update for all CPU/CUDA float parameters (faster, same formula); the
    per-tensor loop elsewhere, e.g. on the meta device."""
    for name in ("adam", "adamw"):
        opt = build_optimizer(_quadratic_model(), OptimConfig(name=name, lr=0.01))
        assert opt.defaults["fused"] is True
        meta = build_optimizer(nn.Linear(3, 2, device="meta"), OptimConfig(name=name))
        assert not meta.defaults["fused"]


def test_fused_adam_steps_like_the_unfused_loop():
    cfg = OptimConfig(name="adam", lr=0.01)
    fused_model, loop_model = _quadratic_model(), _quadratic_model()
    fused = build_optimizer(fused_model, cfg)
    loop = torch.optim.Adam(loop_model.parameters(), lr=0.01, fused=False)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        _step(fused, fused_model, x)
        _step(loop, loop_model, x)
    for a, b in zip(fused_model.parameters(), loop_model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_adam_steps_channels_last_filters_as_dense_views_to_the_bit(name):
    def model():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(),
                            nn.LazyLinear(2))
        net(torch.zeros(1, 3, 8, 8))
        return net.to(memory_format=torch.channels_last)

    cfg = OptimConfig(name=name, lr=1e-2, weight_decay=0.1)
    ours, stock = model(), model()
    opt = build_optimizer(ours, cfg)
    assert type(opt).__name__ == {"adam": "FusedAdam", "adamw": "FusedAdamW"}[name]
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in
              build_optimizer(stock, cfg).param_groups]
    plain = (torch.optim.AdamW if name == "adamw" else torch.optim.Adam)(
        groups, lr=1e-2, fused=True)
    x = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    for _ in range(3):
        for net, o in ((ours, opt), (stock, plain)):
            o.zero_grad()
            net(x).square().sum().backward()
            o.step()
    for a, b in zip(ours.parameters(), stock.parameters()):
        assert a.shape == b.shape and a.stride() == b.stride()
        assert torch.equal(a, b)
    ours_state, stock_state = opt.state_dict()["state"], plain.state_dict()["state"]
    for i, state in stock_state.items():
        for key, value in state.items():
            assert ours_state[i][key].shape == value.shape
            assert torch.equal(ours_state[i][key], value)
    conv = ours[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.grad.shape == conv.shape
