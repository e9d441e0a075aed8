"""torchvision / timm key maps against cnnlab's parameter names and shapes.

Neither library is installed here: the checkpoints' keys and shapes are written out below
from the libraries' documented architectures (module names as their classes define them),
and each list is checked against the published parameter count first, so a slip in the
list shows up as a wrong count rather than a passing map. Tensors live on the meta device:
only names and shapes are compared, in milliseconds, even for VGG-16's 138M parameters."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab import ModelError
from cnnlab.models.keymaps import convert_state_dict, map_keys

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.{k}": (() if k == "num_batches_tracked" else (c,)) for k in BN}


def _ln(prefix: str, c: int) -> dict:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _lin(prefix: str, out: int, inp: int) -> dict:
    return {f"{prefix}.weight": (out, inp), f"{prefix}.bias": (out,)}


def params(keys: dict) -> int:
    """Trainable parameters of a key list (buffers excluded), to compare with the papers'."""
    n = 0
    for k, shape in keys.items():
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        n += int(torch.Size(shape).numel())
    return n


# --- torchvision ResNet (timm names ResNets the same way) ---------------------------------
def tv_resnet(layers, bottleneck: bool, classes: int = 1000) -> dict:
    keys = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    exp = 4 if bottleneck else 1
    c_in = 64
    for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
        for j in range(n):
            p = f"layer{i}.{j}"
            stride = 2 if i > 1 and j == 0 else 1
            if bottleneck:
                keys[f"{p}.conv1.weight"] = (width, c_in, 1, 1)
                keys.update(_bn(f"{p}.bn1", width))
                keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
                keys.update(_bn(f"{p}.bn2", width))
                keys[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
                keys.update(_bn(f"{p}.bn3", width * 4))
            else:
                keys[f"{p}.conv1.weight"] = (width, c_in, 3, 3)
                keys.update(_bn(f"{p}.bn1", width))
                keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
                keys.update(_bn(f"{p}.bn2", width))
            if stride != 1 or c_in != width * exp:
                keys[f"{p}.downsample.0.weight"] = (width * exp, c_in, 1, 1)
                keys.update(_bn(f"{p}.downsample.1", width * exp))
            c_in = width * exp
    keys.update(_lin("fc", classes, c_in))
    return keys


# resnet18 written out in full, as torchvision's state_dict lists it (102 tensors without
# the num_batches_tracked counters): the generator above must reproduce it exactly
RESNET18_HEAD = [
    ("conv1.weight", (64, 3, 7, 7)), ("bn1.weight", (64,)), ("bn1.bias", (64,)),
    ("bn1.running_mean", (64,)), ("bn1.running_var", (64,)),
    ("layer1.0.conv1.weight", (64, 64, 3, 3)), ("layer1.0.bn1.weight", (64,)),
    ("layer2.0.conv1.weight", (128, 64, 3, 3)), ("layer2.0.conv2.weight", (128, 128, 3, 3)),
    ("layer2.0.downsample.0.weight", (128, 64, 1, 1)),
    ("layer2.0.downsample.1.running_var", (128,)),
    ("layer3.1.conv2.weight", (256, 256, 3, 3)), ("layer4.0.downsample.0.weight",
                                                  (512, 256, 1, 1)),
    ("layer4.1.bn2.bias", (512,)), ("fc.weight", (1000, 512)), ("fc.bias", (1000,)),
]


def tv_vgg(cfg, bn: bool) -> dict:
    keys, i, c_in = {}, 0, 3
    for v in cfg:
        if v == "M":
            i += 1
            continue
        keys[f"features.{i}.weight"] = (v, c_in, 3, 3)
        keys[f"features.{i}.bias"] = (v,)
        if bn:
            keys.update(_bn(f"features.{i + 1}", v))
        i += 3 if bn else 2
        c_in = v
    keys.update({**_lin("classifier.0", 4096, 512 * 49), **_lin("classifier.3", 4096, 4096),
                 **_lin("classifier.6", 1000, 4096)})
    return keys


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"]
# (t, c, n, s) of MobileNet v2 (Sandler et al. 2018, table 2)
MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
        (6, 160, 3, 2), (6, 320, 1, 1)]


def tv_mobilenet_v2() -> dict:
    keys = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
    c_in, f = 32, 1
    for t, c, n, _s in MBV2:
        for _ in range(n):
            hidden = c_in * t
            p = f"features.{f}.conv"
            if t == 1:
                keys[f"{p}.0.0.weight"] = (hidden, 1, 3, 3)
                keys.update(_bn(f"{p}.0.1", hidden))
                keys[f"{p}.1.weight"] = (c, hidden, 1, 1)
                keys.update(_bn(f"{p}.2", c))
            else:
                keys[f"{p}.0.0.weight"] = (hidden, c_in, 1, 1)
                keys.update(_bn(f"{p}.0.1", hidden))
                keys[f"{p}.1.0.weight"] = (hidden, 1, 3, 3)
                keys.update(_bn(f"{p}.1.1", hidden))
                keys[f"{p}.2.weight"] = (c, hidden, 1, 1)
                keys.update(_bn(f"{p}.3", c))
            c_in, f = c, f + 1
    keys[f"features.{f}.0.weight"] = (1280, 320, 1, 1)
    keys.update(_bn(f"features.{f}.1", 1280))
    keys.update(_lin("classifier.1", 1000, 1280))
    return keys


def timm_mobilenet_v2() -> dict:
    keys = {"conv_stem.weight": (32, 3, 3, 3), **_bn("bn1", 32)}
    c_in = 32
    for s, (t, c, n, _stride) in enumerate(MBV2):
        for j in range(n):
            p, hidden = f"blocks.{s}.{j}", c_in * t
            if t == 1:  # DepthwiseSeparableConv
                keys[f"{p}.conv_dw.weight"] = (hidden, 1, 3, 3)
                keys.update(_bn(f"{p}.bn1", hidden))
                keys[f"{p}.conv_pw.weight"] = (c, hidden, 1, 1)
                keys.update(_bn(f"{p}.bn2", c))
            else:  # InvertedResidual
                keys[f"{p}.conv_pw.weight"] = (hidden, c_in, 1, 1)
                keys.update(_bn(f"{p}.bn1", hidden))
                keys[f"{p}.conv_dw.weight"] = (hidden, 1, 3, 3)
                keys.update(_bn(f"{p}.bn2", hidden))
                keys[f"{p}.conv_pwl.weight"] = (c, hidden, 1, 1)
                keys.update(_bn(f"{p}.bn3", c))
            c_in = c
    keys["conv_head.weight"] = (1280, 320, 1, 1)
    keys.update({**_bn("bn2", 1280), **_lin("classifier", 1000, 1280)})
    return keys


# EfficientNet-B0 stages: (expand t, kernel, stride, c_out, repeats) (Tan & Le 2019, table 1)
B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
      (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def _conv_b(prefix: str, out: int, inp: int) -> dict:
    return {f"{prefix}.weight": (out, inp, 1, 1), f"{prefix}.bias": (out,)}


def tv_efficientnet_b0() -> dict:
    keys = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
    c_in = 32
    for s, (t, k, _stride, c, n) in enumerate(B0, start=1):
        for j in range(n):
            p, hidden, sq = f"features.{s}.{j}.block", c_in * t, max(1, c_in // 4)
            units = (["expand"] if t != 1 else []) + ["dw", "se", "project"]
            for u, kind in enumerate(units):
                if kind == "expand":
                    keys[f"{p}.{u}.0.weight"] = (hidden, c_in, 1, 1)
                    keys.update(_bn(f"{p}.{u}.1", hidden))
                elif kind == "dw":
                    keys[f"{p}.{u}.0.weight"] = (hidden, 1, k, k)
                    keys.update(_bn(f"{p}.{u}.1", hidden))
                elif kind == "se":
                    keys.update({**_conv_b(f"{p}.{u}.fc1", sq, hidden),
                                 **_conv_b(f"{p}.{u}.fc2", hidden, sq)})
                else:
                    keys[f"{p}.{u}.0.weight"] = (c, hidden, 1, 1)
                    keys.update(_bn(f"{p}.{u}.1", c))
            c_in = c
    keys["features.8.0.weight"] = (1280, 320, 1, 1)
    keys.update({**_bn("features.8.1", 1280), **_lin("classifier.1", 1000, 1280)})
    return keys


def timm_efficientnet_b0() -> dict:
    keys = {"conv_stem.weight": (32, 3, 3, 3), **_bn("bn1", 32)}
    c_in = 32
    for s, (t, k, _stride, c, n) in enumerate(B0):
        for j in range(n):
            p, hidden, sq = f"blocks.{s}.{j}", c_in * t, max(1, c_in // 4)
            se = {**_conv_b(f"{p}.se.conv_reduce", sq, hidden),
                  **_conv_b(f"{p}.se.conv_expand", hidden, sq)}
            if t == 1:
                keys[f"{p}.conv_dw.weight"] = (hidden, 1, k, k)
                keys.update({**_bn(f"{p}.bn1", hidden), **se})
                keys[f"{p}.conv_pw.weight"] = (c, hidden, 1, 1)
                keys.update(_bn(f"{p}.bn2", c))
            else:
                keys[f"{p}.conv_pw.weight"] = (hidden, c_in, 1, 1)
                keys.update(_bn(f"{p}.bn1", hidden))
                keys[f"{p}.conv_dw.weight"] = (hidden, 1, k, k)
                keys.update({**_bn(f"{p}.bn2", hidden), **se})
                keys[f"{p}.conv_pwl.weight"] = (c, hidden, 1, 1)
                keys.update(_bn(f"{p}.bn3", c))
            c_in = c
    keys["conv_head.weight"] = (1280, 320, 1, 1)
    keys.update({**_bn("bn2", 1280), **_lin("classifier", 1000, 1280)})
    return keys


CNX_T = ((3, 3, 9, 3), (96, 192, 384, 768))


def tv_convnext_tiny() -> dict:
    depths, dims = CNX_T
    keys = {"features.0.0.weight": (96, 3, 4, 4), "features.0.0.bias": (96,),
            **_ln("features.0.1", 96)}
    for s, (d, c) in enumerate(zip(depths, dims)):
        if s > 0:
            f = 2 * s
            keys.update(_ln(f"features.{f}.0", dims[s - 1]))
            keys.update({f"features.{f}.1.weight": (c, dims[s - 1], 2, 2),
                         f"features.{f}.1.bias": (c,)})
        for j in range(d):
            p = f"features.{2 * s + 1}.{j}"
            keys.update({f"{p}.layer_scale": (c, 1, 1), f"{p}.block.0.weight": (c, 1, 7, 7),
                         f"{p}.block.0.bias": (c,), **_ln(f"{p}.block.2", c),
                         **_lin(f"{p}.block.3", 4 * c, c), **_lin(f"{p}.block.5", c, 4 * c)})
    keys.update({**_ln("classifier.0", 768), **_lin("classifier.2", 1000, 768)})
    return keys


def timm_convnext_tiny() -> dict:
    depths, dims = CNX_T
    keys = {"stem.0.weight": (96, 3, 4, 4), "stem.0.bias": (96,), **_ln("stem.1", 96)}
    for s, (d, c) in enumerate(zip(depths, dims)):
        if s > 0:
            keys.update(_ln(f"stages.{s}.downsample.0", dims[s - 1]))
            keys.update({f"stages.{s}.downsample.1.weight": (c, dims[s - 1], 2, 2),
                         f"stages.{s}.downsample.1.bias": (c,)})
        for j in range(d):
            p = f"stages.{s}.blocks.{j}"
            keys.update({f"{p}.gamma": (c,), f"{p}.conv_dw.weight": (c, 1, 7, 7),
                         f"{p}.conv_dw.bias": (c,), **_ln(f"{p}.norm", c),
                         **_lin(f"{p}.mlp.fc1", 4 * c, c), **_lin(f"{p}.mlp.fc2", c, 4 * c)})
    keys.update({**_ln("head.norm", 768), **_lin("head.fc", 1000, 768)})
    return keys


# (cnnlab name, key list, the published parameter count at 1000 classes)
CASES = [
    ("resnet18", "torchvision", tv_resnet((2, 2, 2, 2), False), 11_689_512),
    ("resnet50", "torchvision", tv_resnet((3, 4, 6, 3), True), 25_557_032),
    ("resnet50", "timm", tv_resnet((3, 4, 6, 3), True), 25_557_032),
    ("resnet101", "torchvision", tv_resnet((3, 4, 23, 3), True), 44_549_160),
    ("vgg16", "torchvision", tv_vgg(VGG16, bn=False), 138_357_544),
    ("vgg16_bn", "torchvision", tv_vgg(VGG16, bn=True), 138_365_992),
    ("mobilenet_v2", "torchvision", tv_mobilenet_v2(), 3_504_872),
    ("mobilenet_v2", "timm", timm_mobilenet_v2(), 3_504_872),
    ("efficientnet_b0", "torchvision", tv_efficientnet_b0(), 5_288_548),
    ("efficientnet_b0", "timm", timm_efficientnet_b0(), 5_288_548),
    ("convnext_tiny", "torchvision", tv_convnext_tiny(), 28_589_128),
    ("convnext_tiny", "timm", timm_convnext_tiny(), 28_589_128),
]


def _meta_state(keys: dict) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in keys.items()}


def _meta_model(name: str, classes: int = 1000):
    with torch.device("meta"):
        return cnnlab.create_model(name, num_classes=classes)


def test_resnet18_list_matches_torchvision_facts():
    keys = tv_resnet((2, 2, 2, 2), False)
    assert sum(not k.endswith("num_batches_tracked") for k in keys) == 102
    for k, shape in RESNET18_HEAD:
        assert keys[k] == shape


@pytest.mark.parametrize(("name", "layout", "keys", "count"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_key_map_covers_every_tensor(name, layout, keys, count):
    assert params(keys) == count  # the list is the library's (its parameter count)
    model = _meta_model(name)
    state = _meta_state(keys)
    mapping = map_keys(state, model, layout)
    own = model.state_dict()
    assert sorted(mapping.values()) == sorted(own)  # one to one, onto
    converted, used = convert_state_dict(state, model, layout=layout)
    assert used == layout
    assert {k: tuple(v.shape) for k, v in converted.items()} == \
        {k: tuple(v.shape) for k, v in own.items()}
    converted, used = convert_state_dict(state, model)  # auto finds the layout
    assert used in (layout, "torchvision")  # timm's ResNet names are torchvision's


def test_old_checkpoints_without_batch_counters_load():
    keys = {k: s for k, s in tv_resnet((2, 2, 2, 2), False).items()
            if not k.endswith("num_batches_tracked")}
    converted, _ = convert_state_dict(_meta_state(keys), _meta_model("resnet18"),
                                      layout="torchvision")
    assert converted["stem_layers.0.norm.num_batches_tracked"].shape == ()


def test_strict_errors_name_the_first_misfit():
    model = _meta_model("resnet18")
    keys = tv_resnet((2, 2, 2, 2), False)
    extra = {**keys, "layer5.0.conv1.weight": (1, 1, 1, 1)}
    with pytest.raises(ModelError, match="'layer5.0.conv1.weight'.*no counterpart"):
        convert_state_dict(_meta_state(extra), model, layout="torchvision")
    missing = dict(keys)
    del missing["layer3.0.bn2.weight"]
    with pytest.raises(ModelError, match="'stages.2.0.conv2.norm.weight' gets no tensor"):
        convert_state_dict(_meta_state(missing), model, layout="torchvision")
    wrong = {**keys, "layer1.0.conv1.weight": (64, 64, 1, 1)}
    with pytest.raises(ModelError, match="'layer1.0.conv1.weight' has shape"):
        convert_state_dict(_meta_state(wrong), model, layout="torchvision")
    # a ResNet-50 file into a ResNet-18: the auto layout reports one line
    with pytest.raises(ModelError, match="do not fit 'resnet18'"):
        convert_state_dict(_meta_state(tv_resnet((3, 4, 6, 3), True)), model)
    with pytest.raises(ModelError, match="no timm key map for the 'vgg' family"):
        convert_state_dict(_meta_state(tv_vgg(VGG16, False)), _meta_model("vgg16"),
                           layout="timm")


def _torchvision_file(model, keys: dict) -> dict[str, torch.Tensor]:
    """``model``'s weights renamed to torchvision's keys (the inverse of the map)."""
    own = model.state_dict()
    mapping = map_keys(_meta_state(keys), _meta_model(model.model_name), "torchvision")
    return {src: own[dst].clone() for src, dst in mapping.items()}


def test_torchvision_file_loads_through_create_model(tmp_path):
    torch.manual_seed(0)
    ref = cnnlab.create_model("resnet18", num_classes=1000).eval()
    with torch.no_grad():  # move BN statistics off their defaults
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(_torchvision_file(ref, tv_resnet((2, 2, 2, 2), False)), path)
    model = cnnlab.create_model("resnet18", pretrained=str(path)).eval()
    assert model.num_classes == 1000 and model.pretrained_source["layout"] == "torchvision"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    tuned = cnnlab.create_model("resnet18", pretrained=str(path), num_classes=7).eval()
    assert tuned.fc.out_features == 7
    with torch.no_grad():
        assert torch.equal(tuned.forward_features(x), ref.forward_features(x))
    with pytest.raises(ModelError, match="do not fit 'resnet34'"):
        cnnlab.create_model("resnet34", pretrained=str(path))
