"""Every registered model builds and runs at its small size; minimum inputs are exact."""

from __future__ import annotations

import pytest
import torch

from cnnlab import ModelError, create_model, list_models
from cnnlab.models.registry import builder_params, get_entry

# Families the model-zoo issue asks for, by registered name.
EXPECTED = [
    "lenet5", "alexnet", "alexnet_2012", "vgg", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn",
    "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "googlenet", "resnet18", "resnet34", "resnet50",
    "resnet101", "resnet152", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "preact_resnet18", "wide_resnet28_10", "resnext50_32x4d", "mobilenet_v1", "mobilenet_v2",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "convnext_tiny", "convnext_small", "convnext_cifar", "resnet26", "mlp", "mlp1x512",
    "mlp3x512",
]
# 5+ GFLOPs even at 32x32: run them at 16x16 (still the small-image stem) to keep this fast
HEAVY = {"resnet101", "resnet152", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet28_10",
         "convnext_small"}


def test_every_family_is_registered():
    missing = [n for n in EXPECTED if n not in list_models()]
    assert not missing


def _small_build(name: str, num_classes: int = 10, **kw):
    if "input_size" in builder_params(name):
        kw.setdefault("input_size", 32)
    return create_model(name, num_classes=num_classes, **kw)


@pytest.mark.parametrize("name", list_models())
def test_builds_and_runs_at_small_size(name):
    torch.manual_seed(0)
    model = _small_build(name).eval()
    side = max(16 if name in HEAVY else 32, getattr(model, "min_input", 1))
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()
    if hasattr(model, "min_input"):  # the zoo's models: the shared interface
        feats = model.forward_features(x)
        assert feats.shape[:2] == (2, model.num_features)
        assert model.forward_head(feats, pre_logits=True).shape[0] == 2
        model.reset_classifier(3)
        with torch.no_grad():
            assert model(x).shape == (2, 3)


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "vgg11_bn", "googlenet", "resnet20",
                                  "preact_resnet18", "mobilenet_v1", "mobilenet_v2",
                                  "efficientnet_b0", "convnext_cifar"])
def test_train_step_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = _small_build(name).train()
    x = torch.randn(4, 3, 32, 32)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad


def test_googlenet_aux_heads():
    model = create_model("googlenet", num_classes=7, input_size=32, aux_logits=True).train()
    x = torch.randn(2, 3, 32, 32)
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == (2, 7) and [a.shape for a in aux] == [(2, 7), (2, 7)]
    assert model(x).shape == (2, 7)  # forward keeps one interface: main logits only


# --- minimum inputs ----------------------------------------------------------------------


def _min_cases():
    cases = []
    for name in list_models():
        if name == "vgg":
            continue  # the seed's builder checks its size at construction
        if "stem" not in builder_params(name):
            stems: tuple = (None,)
        elif get_entry(name).default_input <= 64:  # small-image families: no ImageNet stem
            stems = ("cifar",)
        else:
            stems = ("imagenet", "cifar")
        for stem in stems:
            cases.append((name, stem))
    return cases


def _meta_build(name, stem):
    kw = {"stem": stem} if stem else {}
    with torch.device("meta"):
        return create_model(name, num_classes=10, **kw).eval()


@pytest.mark.parametrize(("name", "stem"), _min_cases())
def test_min_input_is_exact(name, stem):
    """At min_input the model runs; one pixel less gets a ModelError naming the minimum,
    and would fail inside the network without the check (on the meta device: shapes)."""
    model = _meta_build(name, stem)
    m = model.min_input
    with torch.device("meta"):
        assert model(torch.zeros(1, 3, m, m)).shape == (1, 10)
        if m == 1:
            return
        x = torch.zeros(1, 3, m - 1, m - 1)
        with pytest.raises(ModelError, match=f"at least {m}x{m}"):
            model(x)
        with pytest.raises((RuntimeError, ValueError)):
            model.forward_head(model.forward_features(x))


@pytest.mark.parametrize(("name", "kw", "side"), [
    ("alexnet", {"stem": "imagenet"}, 63),
    ("googlenet", {"stem": "imagenet"}, 15),
    ("googlenet", {"stem": "cifar"}, 2),
    ("convnext_cifar", {}, 8),
    ("lenet5", {}, 16),
    ("lenet5", {"input_size": 28}, 12),  # padded by 2, as LeNet-5 on MNIST
    ("vgg11_bn", {"input_size": 32}, 32),
])
def test_real_forward_at_min_input(name, kw, side):
    model = create_model(name, num_classes=5, **kw).eval()
    assert model.min_input == side
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, side, side))).all()
    with pytest.raises(ModelError, match=f"{name} needs inputs of at least {side}x{side}"):
        model(torch.randn(1, 3, side - 1, side + 5))


def test_wrong_channels_and_rank_are_clear():
    model = create_model("resnet20")
    with pytest.raises(ModelError, match="3-channel images, got 1 channels"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ModelError, match=r"\(B, C, H, W\)"):
        model(torch.randn(3, 32, 32))
