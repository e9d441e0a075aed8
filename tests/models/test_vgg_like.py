"""The depth experiment's ``vgg``: the zoo's interface, and the seed model's weights.

The reference below is the seed's VGGLike written with plain modules (before the model
used ConvNormAct and ImageClassifier): for a seed the new model must start from the same
weights, in the same parameter order (which optimizer state in checkpoints relies on), and
give bitwise-equal outputs; checkpoints of the seed's layout must still load.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import ModelError, create_model
from cnnlab.layers import Dropout, Residual
from cnnlab.models.hub import build_and_load
from cnnlab.models.registry import count_params


class SeedVGGLike(nn.Module):
    def __init__(self, num_classes=10, in_chans=3, blocks=3, layers=2, width=32, norm=None,
                 act=nn.ReLU, residual=False, dropout=0.0):
        super().__init__()
        stages, c_in = [], in_chans
        for b in range(blocks):
            c_out = width * 2**b
            mods = []
            for i in range(layers):
                mods.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1,
                                      bias=norm is None))
                if norm is not None:
                    mods.append(norm(c_out))
                mods.append(act(inplace=True) if act is nn.ReLU else act())
            if residual:
                mods = [Residual(nn.Sequential(*mods[:-1]), "auto", c_in, c_out,
                                 norm_layer=norm, act_layer=act)]
            stages.append(nn.Sequential(*mods, nn.MaxPool2d(2)))
            c_in = c_out
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.head(self.drop(self.pool(self.features(x)).flatten(1)))


CASES = [
    ({}, {}),
    ({"norm": "bn"}, {"norm": nn.BatchNorm2d}),
    ({"residual": True, "norm": "bn", "dropout": 0.5},
     {"residual": True, "norm": nn.BatchNorm2d, "dropout": 0.5}),
    ({"blocks": 2, "layers": 3, "width": 8, "act": "tanh"},
     {"blocks": 2, "layers": 3, "width": 8, "act": nn.Tanh}),
    ({"residual": True, "blocks": 4, "layers": 1}, {"residual": True, "blocks": 4, "layers": 1}),
]


def _pair(args, ref_args, seed=0):
    torch.manual_seed(seed)
    ref = SeedVGGLike(**ref_args)
    torch.manual_seed(seed)
    model = create_model("vgg", **args)
    return ref, model


@pytest.mark.parametrize(("args", "ref_args"), CASES)
def test_same_weights_order_and_outputs_as_the_seed_model(args, ref_args):
    ref, model = _pair(args, ref_args)
    ours, theirs = list(model.parameters()), list(ref.parameters())
    assert len(ours) == len(theirs) and count_params(model) == count_params(ref)
    assert all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(ours, theirs))
    x = torch.randn(4, 3, 32, 32)
    for train in (False, True):
        ref.train(train)
        model.train(train)
        torch.manual_seed(1)  # the same dropout masks
        y_ref = ref(x)
        torch.manual_seed(1)
        assert torch.equal(model(x), y_ref)


@pytest.mark.parametrize(("args", "ref_args"), CASES)
def test_checkpoints_of_the_seed_layout_load(args, ref_args):
    ref, model = _pair(args, ref_args)
    with torch.no_grad():  # "trained" weights, unlike the fresh model's
        for p in ref.parameters():
            p.add_(torch.randn_like(p))
    ref.eval()
    x = torch.randn(2, 3, 32, 32)
    model.load_state_dict(ref.state_dict())
    assert torch.equal(model.eval()(x), ref(x))
    loaded = build_and_load("vgg", 10, 3, args, ref.state_dict(), "seed.safetensors")
    assert torch.equal(loaded(x), ref(x))


def test_zoo_interface():
    model = create_model("vgg", num_classes=4, blocks=3, input_size=16).eval()
    assert model.min_input == 8 and model.input_size == 16
    assert model.head is model.fc and model.head.out_features == 4
    x = torch.randn(2, 3, 16, 16)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 128)
    assert torch.equal(model.forward_head(feats), model(x))
    model.reset_classifier(7)
    assert model(x).shape == (2, 7)
    with pytest.raises(ModelError, match="at least 8x8"):
        model(torch.randn(1, 3, 7, 7))
    assert not any(k.startswith("head.") for k in model.state_dict())


@pytest.mark.parametrize("act", ["relu", "relu6"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("bf16", [False, True])
def test_activation_after_the_pool_gives_the_same_gradients_to_the_bit(act, residual, bf16):
    """The block's last ReLU runs after its pooling; against the seed order (activation,
    then pool) on integer weights and inputs, whose many tied maxima (zeros after ReLU, 6s
    after ReLU6, equal values before either) are where the two orders pick other pixels."""
    args = {"blocks": 2, "layers": 2, "width": 4, "act": act, "residual": residual}
    ref, model = _pair(args, {**args, "act": {"relu": nn.ReLU, "relu6": nn.ReLU6}[act]})
    assert isinstance(model.features[0][-1], {"relu": nn.ReLU, "relu6": nn.ReLU6}[act])
    with torch.no_grad():
        for a, b in zip(ref.parameters(), model.parameters()):
            a.copy_(torch.randint(-2, 3, a.shape))
            b.copy_(a)
    x = torch.randint(-1, 3, (8, 3, 16, 16)).float()
    grads = []
    for net in (ref, model):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        out.float().square().sum().backward()
        grads.append([p.grad for p in net.parameters()])
    assert torch.equal(model(x), ref(x))
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert any(bool(g.abs().sum() > 0) for g in grads[0])  # a gradient that could differ


@pytest.mark.parametrize("residual", [False, True])
def test_plain_pytorch_restores_the_seed_order_and_stock_convolutions(residual):
    from cnnlab.layers import Conv2d
    from cnnlab.models.plain import plain_pytorch

    args = {"blocks": 5, "layers": 2, "width": 4, "residual": residual}
    ref, model = _pair(args, args)
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    plain_pytorch(model)
    assert not any(isinstance(m, Conv2d) for m in model.modules())
    def leaves(module):  # the types of the modules that compute, in forward order
        return [type(m) for m in module.modules() if not list(m.children())]

    assert leaves(model.features) == leaves(ref.features)
    assert model.state_dict().keys() == create_model("vgg", **args).state_dict().keys()
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-4)
    assert torch.equal(model(x), ref(x))
    plain_pytorch(model)  # a second time changes nothing
    assert torch.equal(model(x), ref(x))
