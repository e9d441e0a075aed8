"""Registry, stems, cards, errors and the ``cnnlab models`` command."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab import ModelError, create_model, list_models, model_info
from cnnlab.cli import main
from cnnlab.models.efficientnet import (
    ALPHA,
    BETA,
    GAMMA,
    compound_scaling,
    efficientnet_scaling,
    round_filters,
    scaled_stages,
)
from cnnlab.models.registry import resolve_stem

# --- stem selection ----------------------------------------------------------------------


@pytest.mark.parametrize(("stem", "input_size", "expected"), [
    ("auto", None, "imagenet"),
    ("auto", 224, "imagenet"),
    ("auto", 65, "imagenet"),
    ("auto", 64, "cifar"),
    ("auto", 32, "cifar"),
    ("auto", (28, 40), "cifar"),
    ("cifar", 224, "cifar"),
    ("imagenet", 32, "imagenet"),
])
def test_resolve_stem(stem, input_size, expected):
    assert resolve_stem(stem, input_size, "m") == expected


def test_stem_changes_the_network():
    with torch.device("meta"):
        big = create_model("resnet18", num_classes=10, input_size=224).eval()
        small = create_model("resnet18", num_classes=10, input_size=32).eval()
        forced = create_model("resnet18", num_classes=10, stem="cifar")
    assert (big.stem, small.stem, forced.stem) == ("imagenet", "cifar", "cifar")
    conv = small.stem_layers.conv
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert big.stem_layers[0].conv.stride == (2, 2)
    # a 32x32 image is not reduced to 1x1: the last stage sees 4x4 with the small stem
    with torch.device("meta"):
        assert small.forward_features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (4, 4)
        assert big.forward_features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (1, 1)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "convnext_tiny",
                                  "googlenet", "mobilenet_v1"])
def test_small_stem_keeps_4x4_or_more(name):
    with torch.device("meta"):
        model = create_model(name, num_classes=10, input_size=32).eval()
        side = model.forward_features(torch.zeros(1, 3, 32, 32)).shape[-1]
    assert model.stem == "cifar" and side >= 4


def test_bad_stems():
    with pytest.raises(ModelError, match="unknown stem 'cifr'.*did you mean 'cifar'"):
        create_model("resnet18", stem="cifr")
    with pytest.raises(ModelError, match="resnet20 is a small-image network"):
        create_model("resnet20", stem="imagenet")


def test_lenet_pads_mnist_sized_inputs():
    assert create_model("lenet5", input_size=28).min_input == 12
    assert create_model("lenet5").min_input == 16


# --- names and arguments -----------------------------------------------------------------


@pytest.mark.parametrize(("typo", "suggestion"), [
    ("resnet-18", "resnet18"), ("ResNet50", "resnet50"), ("efficentnet_b0", "efficientnet_b0"),
    ("convnext-tiny", "convnext_tiny"), ("vgg16bn", "vgg16_bn"),
])
def test_unknown_name_suggests(typo, suggestion):
    with pytest.raises(ModelError, match=f"unknown model '{typo}'.*did you mean.*{suggestion}"):
        create_model(typo)


def test_bad_arguments():
    with pytest.raises(ModelError, match="has no argument 'widht_mult'.*did you mean 'width_mult'"):
        create_model("mobilenet_v2", widht_mult=0.5)
    with pytest.raises(ModelError, match="shortcut must be 'A'"):
        create_model("resnet20", shortcut="D")
    with pytest.raises(ModelError, match="unknown norm 'batchnrm'"):
        create_model("resnet18", norm="batchnrm")
    with pytest.raises(ModelError, match="width_mult must be > 0"):
        create_model("mobilenet_v1", width_mult=0)
    with pytest.raises(ModelError, match="pool must be 'avg' or 'max'"):
        create_model("lenet5", pool="median")


def test_norms_and_activations_pass_through_the_factory():
    for norm in ("none", "gn", "ln"):
        model = create_model("resnet20", norm=norm, act="silu").eval()
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    model = create_model("resnet20", norm="none")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model.stem_layers.conv.bias is not None  # no norm: the conv gets a bias
    assert isinstance(create_model("lenet5", act="relu", pool="max").features[1],
                      torch.nn.MaxPool2d)


def test_list_models_patterns():
    assert list_models("resnet20*") == ["resnet20"]
    assert set(list_models("efficientnet_b*")) == {f"efficientnet_b{i}" for i in range(8)}
    assert list_models("VGG16*") == ["vgg16", "vgg16_bn"]


def test_create_model_records_what_built_it():
    model = create_model("resnet20", num_classes=4, in_chans=1, width=8)
    assert (model.model_name, model.model_args) == ("resnet20", {"width": 8})
    assert (model.model_num_classes, model.model_in_chans) == (4, 1)


# --- EfficientNet compound scaling --------------------------------------------------------


def test_compound_scaling_rule():
    s = compound_scaling(1)
    assert (s.depth, s.width, s.resolution) == (pytest.approx(1.2), pytest.approx(1.1), 258)
    assert ALPHA * BETA**2 * GAMMA**2 == pytest.approx(1.92, abs=0.01)  # FLOPs ~ 2 ** phi
    b0 = compound_scaling(0)
    assert (b0.width, b0.depth, b0.resolution) == (1.0, 1.0, 224)


def test_released_variants_derive_from_b0():
    b3 = efficientnet_scaling(3)
    stages = scaled_stages(b3)
    assert [n for *_, n in stages] == [2, 3, 3, 5, 5, 6, 2]  # ceil(repeats * 1.4): 26 blocks
    assert [c for _, _, _, c, _ in stages] == [24, 32, 48, 96, 136, 232, 384]
    assert round_filters(32, 1.1) == 32 and round_filters(320, 1.1) == 352
    with pytest.raises(ModelError, match="B0..B7"):
        efficientnet_scaling(9)


# --- model cards ---------------------------------------------------------------------------


def test_model_info_card():
    card = model_info("resnet18")
    assert card["params"] == 11_689_512 and card["num_classes"] == 1000
    assert card["flops"] / 2e9 == pytest.approx(1.814, rel=5e-3)
    assert (card["family"], card["default_input"], card["input_size"]) == ("resnet", 224, 224)
    assert card["stem"] == "imagenet" and "He et al." in card["paper"]
    small = model_info("resnet18", 32, num_classes=10)
    assert small["stem"] == "cifar" and small["flops"] < card["flops"]
    assert model_info("alexnet")["min_input"] == 63


def test_model_info_of_a_built_model():
    card = model_info(create_model("resnet20"), 32)
    assert card["name"] == "resnet20" and card["params"] == 269_722


def test_model_info_too_small_input():
    with pytest.raises(ModelError, match="at least 32x32"):
        model_info("vgg16", 16)


# --- cnnlab models ---------------------------------------------------------------------------


def test_cli_models_table(capsys):
    assert main(["models", "resnet20*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "FAMILY", "PARAMS", "GFLOPS@32", "GFLOPS@NATIVE",
                              "NATIVE", "MIN"]
    assert out[1].split()[:3] == ["resnet20", "resnet_cifar", "269,722"]
    assert any(line.startswith("reference:") for line in out)  # one match: details too
    # a second run reads the disk cache and prints the same
    assert main(["models", "resnet20*"]) == 0
    assert capsys.readouterr().out.splitlines() == out


def test_cli_models_substring_and_json(capsys):
    assert main(["models", "mobilenet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["mobilenet_v1", "mobilenet_v2"]
    assert rows[1]["params"] == 3_504_872 and rows[1]["gflops_native"] > rows[1]["gflops_small"]


def test_cli_models_unknown(capsys):
    assert main(["models", "resnt18"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean resnet18" in err
