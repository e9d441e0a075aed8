"""Faithfulness: the reference variants have exactly the published parameter counts.

Sources of the figures (checked, not copied from this code):
- torchvision's weight metadata ("num_params"): resnet18..152, resnext50_32x4d,
  resnext101_32x8d, wide_resnet50_2, vgg11..vgg19(_bn), alexnet, googlenet, mobilenet_v2,
  efficientnet_b0..b7, convnext_tiny/small; FLOPs: its "_ops" (GMACs).
- osmr/imgclsmob (pytorchcv) model tests: mobilenet_w1 4,231,976; wrn28_10_cifar10
  36,479,194; resnet20_cifar10 272,474 (projection shortcuts, option B).
- ResNet-20 with option-A shortcuts: 269,722 (He et al. 2016 report 0.27M); CIFAR ResNet
  32/44/56/110 with option A: 464,154 / 658,586 / 853,018 / 1,727,962.
- ResNet-26 (timm's resnet26: bottlenecks 2-2-2-2, the stem of resnet50): 15,995,176,
  osmr/imgclsmob's resnetbc26b; resnet50's 25,557,032 less 1, 2, 4, 1 bottlenecks of the
  four stages (17 w^2 + 12 w parameters each at width w = 64, 128, 256, 512).
- AlexNet 2012 (two towers): 60,965,224 (Caffe's bvlc_alexnet, the paper's "60 million").
- LeNet-5 (dense C3, linear output), one channel, 10 classes: 61,706.
- GoogLeNet with the paper's 5x5 branch: 6,624,904 + 16 * sum(5x5reduce * 5x5) = 7,005,832;
  with torchvision's auxiliary heads: 13,004,888.
"""

from __future__ import annotations

import pytest
import torch

from cnnlab import create_model
from cnnlab.models.registry import count_flops, count_params

IMAGENET_1000 = {
    "resnet18": 11_689_512,
    "resnet26": 15_995_176,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "wide_resnet50_2": 68_883_240,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "alexnet": 61_100_840,
    "alexnet_2012": 60_965_224,
    "googlenet": 6_624_904,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "convnext_tiny": 28_589_128,
    "convnext_small": 50_223_688,
}

CIFAR_10 = {
    ("resnet20", ()): 269_722,
    ("resnet32", ()): 464_154,
    ("resnet44", ()): 658_586,
    ("resnet56", ()): 853_018,
    ("resnet110", ()): 1_727_962,
    ("resnet20", (("shortcut", "B"),)): 272_474,
    ("wide_resnet28_10", ()): 36_479_194,
    ("lenet5", (("in_chans", 1),)): 61_706,
    ("mlp", ()): 1_841_162,  # 3072 -> 512 -> 512 -> 10
    ("mlp1x512", ()): 1_578_506,
    ("mlp3x512", ()): 2_103_818,
    ("mlp1x512", (("input_size", 28),)): 1_209_866,  # Zhang et al. 2017 (28x28 crops)
    ("mlp3x512", (("input_size", 28),)): 1_735_178,
    ("googlenet", (("num_classes", 1000), ("c5_kernel", 5))): 7_005_832,
    ("googlenet", (("num_classes", 1000), ("aux_logits", True))): 13_004_888,
}


def _meta(name: str, **kw):
    with torch.device("meta"):  # shapes only: counting parameters needs no memory
        return create_model(name, **kw)


@pytest.mark.parametrize(("name", "expected"), sorted(IMAGENET_1000.items()))
def test_imagenet_parameter_counts(name, expected):
    assert count_params(_meta(name, num_classes=1000)) == expected


@pytest.mark.parametrize(("key", "expected"), list(CIFAR_10.items()), ids=str)
def test_cifar_and_variant_parameter_counts(key, expected):
    name, extra = key
    kw = {"num_classes": 10, **dict(extra)}
    assert count_params(_meta(name, **kw)) == expected


@pytest.mark.parametrize(("base", "width", "depth", "released"), [
    ("efficientnet_b0", 1.2, 1.4, "efficientnet_b3"),
    ("efficientnet_b3", 2.0, 3.1, "efficientnet_b7"),
])
def test_efficientnet_multipliers_reach_the_released_variants(base, width, depth, released):
    scaled = _meta(base, num_classes=1000, width_mult=width, depth_mult=depth)
    assert count_params(scaled) == IMAGENET_1000[released]


def test_meta_count_equals_real_build():
    assert count_params(create_model("resnet18", num_classes=1000)) == 11_689_512


@pytest.mark.parametrize(("name", "gmacs"), [
    ("resnet18", 1.814), ("vgg16", 15.47), ("efficientnet_b0", 0.386),
    ("convnext_tiny", 4.456),
])
def test_flops_match_torchvision(name, gmacs):
    """torchvision publishes multiply-adds; the flop counter counts 2 FLOPs per one."""
    flops = count_flops(_meta(name, num_classes=1000), 224)
    assert flops / 2e9 == pytest.approx(gmacs, rel=5e-3)
