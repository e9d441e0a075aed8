"""precise_bn recomputes BN statistics exactly; bn_eval_modes compares three kinds."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.errors import ModelError
from cnnlab.train.precise_bn import bn_eval_modes, precise_bn


def dataset(n=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 6, 6, generator=g) * 2 + 0.5
    y = torch.randint(0, 4, (n,), generator=g)
    return x, y


def batches(x, y, size=16):  # 100 samples: six batches of 16 and one of 4
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def one_bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 16, 4))


def population(h: torch.Tensor):
    """Exact mean and (biased) variance per channel of (N, C, H, W), in float64."""
    h = h.double()
    return h.mean((0, 2, 3)), h.var((0, 2, 3), correction=0)


def test_exact_population_statistics_single_bn():
    x, y = dataset()
    model = one_bn_net()
    model[1].running_mean.fill_(7.0)  # stale statistics to be replaced
    model.train()
    out = precise_bn(model, batches(x, y))
    assert out is model and model.training and model[1].training  # modes restored
    with torch.no_grad():
        mean, var = population(model[0](x))  # the whole dataset at once
    assert torch.allclose(model[1].running_mean.double(), mean, atol=1e-5)
    assert torch.allclose(model[1].running_var.double(), var, rtol=1e-5, atol=1e-6)
    assert model[1].num_batches_tracked.item() == 0


def test_not_the_average_of_batch_variances():
    """torch's cumulative averaging (momentum=None) averages per-batch variances, which
    is not the population variance; precise_bn's is."""
    x, y = dataset()
    model = one_bn_net()
    model[1].momentum = None
    model[1].reset_running_stats()
    model.train()
    with torch.no_grad():
        for xb, _ in batches(x, y):
            model(xb)
    averaged = model[1].running_var.clone()
    precise_bn(model, batches(x, y))
    _, var = population(model[0](x).detach())
    assert torch.allclose(model[1].running_var.double(), var, rtol=1e-5)
    assert not torch.allclose(averaged.double(), var, rtol=1e-3)


def test_two_bn_layers_use_batch_statistics_upstream():
    x, y = dataset()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
                          nn.Dropout(0.5), nn.Conv2d(5, 2, 3), nn.BatchNorm2d(2))
    model.eval()
    precise_bn(model, batches(x, y))
    assert not any(m.training for m in model.modules())
    conv1, bn1, conv2 = model[0], model[1], model[4]
    with torch.no_grad():
        h1 = [conv1(xb) for xb, _ in batches(x, y)]
        # second BN's inputs as in training: first BN with each batch's statistics,
        # dropout off (evaluation behaviour)
        h2 = torch.cat([conv2(F.relu(F.batch_norm(h, None, None, bn1.weight, bn1.bias,
                                                   training=True))) for h in h1])
    for bn, h in ((bn1, torch.cat(h1)), (model[5], h2)):
        mean, var = population(h)
        assert torch.allclose(bn.running_mean.double(), mean, atol=1e-5)
        assert torch.allclose(bn.running_var.double(), var, rtol=1e-5, atol=1e-6)


def test_num_batches_and_bare_tensors():
    x, y = dataset()
    model = one_bn_net()
    precise_bn(model, (xb for xb, _ in batches(x, y)), num_batches=2)  # a generator of x
    with torch.no_grad():
        mean, var = population(model[0](x[:32]))
    assert torch.allclose(model[1].running_mean.double(), mean, atol=1e-5)
    assert torch.allclose(model[1].running_var.double(), var, rtol=1e-5)


def test_edge_cases():
    model = one_bn_net()
    with pytest.raises(ModelError, match="no batches"):
        precise_bn(model, [])
    with pytest.raises(ModelError, match="num_batches"):
        precise_bn(model, [], num_batches=0)
    with pytest.raises(ModelError, match=r"\(x, y\)"):
        precise_bn(model, [{"x": 1}])
    plain = nn.Linear(3, 2)
    assert precise_bn(plain, []) is plain  # nothing to do without BN
    assert cnnlab.precise_bn is precise_bn


def test_bn_eval_modes():
    """A hand-built classifier: class = x0 > 0, read through a BN layer. Stale running
    statistics break it; recomputed or per-batch statistics do not."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g)
    x = x - x.mean(0)  # population mean exactly 0
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        model[2].bias.zero_()
        model[1].running_mean.copy_(torch.tensor([3.0, 0.0]))  # stale
    model.train()
    data = batches(x, y, size=100)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = bn_eval_modes(model, data, data)
    assert set(res) == {"running", "precise", "batch"}
    assert res["precise"] == 1.0
    assert res["running"] < 0.6
    assert res["batch"] > 0.9
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # model left as it was
    assert model.training
    with pytest.raises(ModelError, match="no evaluation samples"):
        bn_eval_modes(model, data, [])
