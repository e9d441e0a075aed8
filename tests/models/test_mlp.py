"""The MLP family and the generic ``init_scale`` keyword of every model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import ModelError, create_model, list_models, model_info
from cnnlab.models.registry import builder_params
from cnnlab.utils.params import count_params


def _hand_count(d_in: int, hidden: list[int], classes: int = 10) -> int:
    widths = [d_in, *hidden, classes]
    return sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))


@pytest.mark.parametrize(("name", "kw", "hidden"), [
    ("mlp", {}, [512, 512]),
    ("mlp1x512", {}, [512]),
    ("mlp3x512", {}, [512, 512, 512]),
    ("mlp", {"hidden": [64, 32], "in_chans": 1, "input_size": 28}, [64, 32]),
    ("mlp", {"hidden": []}, []),
])
def test_shapes_and_parameter_counts(name, kw, hidden):
    model = create_model(name, **kw).eval()
    c, side = kw.get("in_chans", 3), kw.get("input_size", 32)
    assert count_params(model) == _hand_count(c * side * side, hidden)
    x = torch.randn(2, c, side, side)
    feats = model.forward_features(x)
    assert feats.shape == (2, hidden[-1] if hidden else c * side * side)
    assert model.num_features == feats.shape[1]
    assert model.forward_head(feats, pre_logits=True).shape == feats.shape
    assert model(x).shape == (2, 10)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)


def test_zhang_et_al_counts():
    """Zhang et al. (2017) trained on 28x28 center crops of CIFAR-10: their counts."""
    assert count_params(create_model("mlp1x512", input_size=28)) == 1_209_866
    assert count_params(create_model("mlp3x512", input_size=28)) == 1_735_178


def test_options_build_the_layers():
    model = create_model("mlp", hidden=[16], norm="bn", dropout=0.5, act="gelu")
    kinds = [type(m) for m in model.features]
    assert kinds == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Dropout]
    assert create_model("mlp", hidden=8).features[1].out_features == 8
    assert create_model("mlp", input_size=(24, 40)).features[1].in_features == 3 * 24 * 40


@pytest.mark.parametrize(("kw", "match"), [
    ({"hidden": [512, 0]}, "hidden must be a list of layer widths"),
    ({"hidden": "512"}, "hidden must be a list of layer widths"),
    ({"norm": "ln"}, "norm must be 'none' or 'bn'"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"input_size": 0}, "input_size must be"),
])
def test_bad_options(kw, match):
    with pytest.raises(ModelError, match=match):
        create_model("mlp", **kw)


def test_wrong_input_size_is_one_line():
    model = create_model("mlp", input_size=28)
    with pytest.raises(ModelError, match=r"built for 28x28 images, got 32x32") as e:
        model(torch.zeros(1, 3, 32, 32))
    assert "\n" not in str(e.value) and "input_size=32" in str(e.value)
    with pytest.raises(ModelError, match="at least 28x28") as e:
        model(torch.zeros(1, 3, 16, 16))
    assert "\n" not in str(e.value)


def test_card_and_listing():
    card = model_info("mlp3x512")
    assert (card["params"], card["default_input"], card["min_input"]) == (2_103_818, 32, 32)
    assert card["family"] == "mlp" and "Zhang" in card["paper"]
    assert model_info("mlp1x512", input_size=28)["params"] == 1_209_866
    assert {"mlp", "mlp1x512", "mlp3x512"} <= set(list_models("mlp*"))
    assert "hidden" in builder_params("mlp") and "hidden" not in builder_params("mlp1x512")


def test_trains_on_digits():
    from cnnlab.config import RunConfig
    from cnnlab.experiments.run import train_run

    cfg = RunConfig().set(**{
        "model.name": "mlp", "model.hidden": [64], "data.spec": "digits", "data.limit": 256,
        "train.epochs": 2, "train.quiet": True, "train.device": "cpu", "data.augment": "none",
        "data.batch_size": 32,
    })
    result = train_run(cfg, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert result.status == "ok" and losses[1] < losses[0]


# --- init_scale ---------------------------------------------------------------------------


def _state(name: str, **kw) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return create_model(name, **kw).state_dict()


@pytest.mark.parametrize("name", ["mlp", "resnet20", "lenet5", "convnext_cifar"])
def test_init_scale_one_is_a_bitwise_no_op(name):
    default, one = _state(name), _state(name, init_scale=1.0)
    assert default.keys() == one.keys()
    assert all(torch.equal(default[k], one[k]) for k in default)


@pytest.mark.parametrize(("name", "kw"), [("mlp", {"norm": "bn"}), ("resnet20", {})])
def test_init_scale_scales_weights_only(name, kw):
    base, scaled = _state(name, **kw), _state(name, init_scale=2.0, **kw)
    model = create_model(name, **kw)
    norm_params = {f"{n}.{p}" for n, m in model.named_modules()
                   if isinstance(m, nn.modules.batchnorm._NormBase)
                   for p, _ in m.named_parameters(recurse=False)}
    assert norm_params  # the case checks norm layers are left alone
    scaled_keys = []
    for k, v in base.items():
        if v.dim() > 1 and k not in norm_params:
            assert torch.equal(scaled[k], 2.0 * v), k  # exact: times 2 is exact in floats
            assert torch.equal(scaled[k].norm(), 2.0 * v.norm())
            scaled_keys.append(k)
        else:  # biases, norm affine parameters and buffers
            assert torch.equal(scaled[k], v), k
    assert any(k.endswith("weight") for k in scaled_keys)


def test_init_scale_is_generic():
    for name in list_models():
        assert builder_params(name)[-1] == "init_scale"
    model = create_model("mlp", init_scale=0.5)
    assert model.model_args == {"init_scale": 0.5}
    with torch.device("meta"):  # cards build on the meta device
        assert create_model("resnet18", init_scale=3.0).fc.weight.is_meta
    assert model_info("resnet20", init_scale=3.0)["params"] == model_info("resnet20")["params"]


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("inf"), float("nan"), "2", True])
def test_init_scale_refuses_non_positive(bad):
    with pytest.raises(ModelError, match="init_scale must be a finite number > 0") as e:
        create_model("mlp", init_scale=bad)
    assert "\n" not in str(e.value)


def test_init_scale_from_the_config():
    from cnnlab.config import RunConfig
    from cnnlab.data.sources.synthetic import toy_dataset
    from cnnlab.experiments.run import build_model

    ds = toy_dataset(n=32, size=8, channels=3, classes=4, seed=0, test=8)
    cfg = RunConfig().set(**{"model.name": "mlp", "model.hidden": [8]})
    torch.manual_seed(0)
    base = build_model(cfg, ds)
    torch.manual_seed(0)
    scaled = build_model(cfg.set(**{"model.init_scale": 4.0}), ds)
    assert torch.equal(scaled.features[1].weight, 4.0 * base.features[1].weight)
    assert torch.equal(scaled.features[1].bias, base.features[1].bias)
