"""The "ResNet strikes back" optimizer and loss against hand-computed numbers: LAMB, binary
cross-entropy (smoothing, threshold, soft targets), the multistep schedule, and the
stacked trainer refusing LAMB."""

import math

import pytest
import torch
from torch import nn

from cnnlab.config import OptimConfig, RunConfig, load_config
from cnnlab.errors import ConfigError
from cnnlab.train.losses import binary_cross_entropy, classification_loss
from cnnlab.train.optim import Lamb, build_optimizer, lr_factor
from cnnlab.train.stacked import config_problem


def _lamb_step(w, g, wd, lr, opt_state=None):
    w = torch.tensor(w, requires_grad=True)
    opt = Lamb([{"params": [w], "weight_decay": wd}], lr=lr)
    w.grad = torch.tensor(g)
    opt.step()
    return w.detach()


def test_lamb_first_step_by_hand():
    # step 1: m_hat = g, v_hat = g^2, so the Adam step is g / (|g| + 1e-6) ~ sign(g) = (1, 1)
    # u = (1, 1) + 0.1 (3, 4) = (1.3, 1.4); ||u|| = sqrt(3.65) = 1.910497; ||w|| = 5
    # r = 5 / 1.910497 = 2.617120; w <- w - 0.1 r u = (2.659774, 3.633603)
    w = _lamb_step([3.0, 4.0], [1.0, 2.0], wd=0.1, lr=0.1)
    assert torch.allclose(w, torch.tensor([2.659774, 3.633603]), atol=2e-6)


def test_lamb_second_step_and_zero_weights():
    b1, b2, eps, lr, wd = 0.9, 0.999, 1e-6, 0.05, 0.01
    w0, g1, g2 = [1.0, -2.0, 0.5], [0.2, 0.4, -0.1], [-0.3, 0.1, 0.2]
    p = torch.tensor(w0, requires_grad=True)
    opt = Lamb([{"params": [p], "weight_decay": wd}], lr=lr)
    w, m, v = list(w0), [0.0] * 3, [0.0] * 3
    for t, g in ((1, g1), (2, g2)):
        p.grad = torch.tensor(g)
        opt.step()
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        u = [(mi / (1 - b1 ** t)) / (math.sqrt(vi / (1 - b2 ** t)) + eps) + wd * wi
             for mi, vi, wi in zip(m, v, w)]
        r = math.sqrt(sum(x * x for x in w)) / math.sqrt(sum(x * x for x in u))
        w = [wi - lr * r * ui for wi, ui in zip(w, u)]
    assert torch.allclose(p.detach(), torch.tensor(w), atol=1e-6)
    # a zero tensor has no norm to trust: ratio 1, so the step is lr x the Adam step
    z = _lamb_step([0.0, 0.0], [1.0, -1.0], wd=0.1, lr=0.1)
    assert torch.allclose(z, torch.tensor([-0.1, 0.1]), atol=1e-6)


def test_lamb_without_decay_is_adam_and_builds_from_config():
    torch.manual_seed(0)
    a, b = torch.randn(5, requires_grad=True), None
    b = a.detach().clone().requires_grad_(True)
    lamb = Lamb([{"params": [a], "weight_decay": 0.0}], lr=0.01)
    adam = torch.optim.Adam([b], lr=0.01, eps=1e-6)
    for _ in range(3):
        g = torch.randn(5)
        a.grad, b.grad = g.clone(), g.clone()
        lamb.step()
        adam.step()
    assert torch.allclose(a, b, atol=1e-6)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    opt = build_optimizer(model, OptimConfig(name="lamb", lr=0.005, weight_decay=0.02))
    assert isinstance(opt, Lamb)
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.02]  # norm, bias: 0
    with pytest.raises(ConfigError, match="coupled"):
        load_config(overrides=["optim.name=lamb", "optim.decay_mode=coupled"])


def test_bce_by_hand():
    z = torch.tensor([[0.0, 2.0]])
    # -log(1 - s(0)) = ln 2 = 0.693147; -log s(2) = ln(1 + e^-2) = 0.126928; mean 0.410038
    assert binary_cross_entropy(z, torch.tensor([1])).item() == pytest.approx(0.410038, abs=1e-6)
    # soft (0.3, 0.7): class 0 ln 2; class 1 0.7 x 0.126928 + 0.3 x 2.126928 = 0.726928
    soft = torch.tensor([[0.3, 0.7]])
    assert binary_cross_entropy(z, soft).item() == pytest.approx(0.710038, abs=1e-6)
    # threshold 0.2 binarizes (0.3, 0.7) to (1, 1): ln 2 and 0.126928 again
    assert binary_cross_entropy(z, soft, target_threshold=0.2).item() == pytest.approx(
        0.410038, abs=1e-6)
    # (0.1, 0.9) at threshold 0.2 is the hard target
    assert binary_cross_entropy(z, torch.tensor([[0.1, 0.9]]), target_threshold=0.2).item() \
        == pytest.approx(0.410038, abs=1e-6)
    # smoothing 0.1 over K = 2: (0.05, 0.95); class 1: 0.95 x 0.126928 + 0.05 x 2.126928
    assert binary_cross_entropy(z, torch.tensor([1]), label_smoothing=0.1).item() \
        == pytest.approx((0.693147 + 0.226928) / 2, abs=1e-6)
    two = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
    assert classification_loss("bce", two, torch.tensor([1, 1]), reduction="sum").item() \
        == pytest.approx(2 * 0.410038, abs=1e-5)


def test_multistep_schedule_at_its_milestones():
    cfg = OptimConfig(schedule="multistep", milestones=(0.5, 0.75), gamma=0.1)
    f = [lr_factor(cfg, s, 100, 10) for s in (0, 49, 50, 74, 75, 99)]
    assert f == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ConfigError, match="milestones"):
        load_config(overrides=["optim.milestones=[0.75, 0.5]"])


def test_stacking_refuses_lamb():
    cfg = RunConfig().set(**{"optim.name": "lamb"})
    assert "lamb" in config_problem([cfg, cfg.set(**{"train.seed": 1})])
