"""Fine-tuning: a frozen backbone stays bitwise unchanged, layer-wise lr decay follows
lr * d ** (L + 1 - layer), reset_classifier gives a new head."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.config import RunConfig, load_config
from cnnlab.errors import ConfigError
from cnnlab.train.finetune import freeze_backbone, layer_ids
from cnnlab.train.optim import build_optimizer


def _tiny_resnet(classes: int = 4, in_chans: int = 3):
    torch.manual_seed(0)
    return cnnlab.create_model("resnet20", num_classes=classes, in_chans=in_chans, width=4)


def test_frozen_backbone_is_bitwise_unchanged_after_steps():
    model = _tiny_resnet()
    freeze_backbone(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = load_config(overrides=["optim.name=sgd", "optim.lr=0.5", "optim.weight_decay=1e-2"])
    opt = build_optimizer(model, cfg.optim)
    model.train()
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,))
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["fc.weight", "fc.bias"]  # BN running stats and counters kept too
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]


def test_trainer_applies_train_freeze(tmp_path):
    model = _tiny_resnet(10, in_chans=1)  # digits: grayscale
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = load_config(overrides=["data.spec=digits", "data.limit=64", "data.batch_size=32",
                                 "train.epochs=1", "train.freeze=backbone", "train.quiet=true",
                                 "train.checkpoint=false", "train.device=cpu"])
    cnnlab.fit(model, config=cfg, out_dir=tmp_path / "run")
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k].to(before[k].dtype))}
    assert moved == {"fc.weight", "fc.bias"}


def test_layer_ids_of_a_resnet():
    model = _tiny_resnet()
    ids, num_layers = layer_ids(model)
    assert num_layers == 9  # 3 stages x 3 blocks
    assert ids["stem_layers.conv.weight" if "stem_layers.conv.weight" in ids
               else "stem_layers.norm.weight"] == 0
    assert ids["stages.0.0.conv1.conv.weight"] == 1
    assert ids["stages.2.2.conv2.norm.bias"] == 9
    assert ids["fc.weight"] == ids["fc.bias"] == 10


def test_layer_decay_lr_per_parameter():
    model = _tiny_resnet()
    cfg = load_config(overrides=["optim.name=sgd", "optim.lr=0.1", "optim.layer_decay=0.5",
                                 "optim.weight_decay=1e-4"])
    opt = build_optimizer(model, cfg.optim)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    ids, num_layers = layer_ids(model)
    for name, p in params.items():
        assert lr_of[id(p)] == pytest.approx(0.1 * 0.5 ** (num_layers + 1 - ids[name]))
    assert lr_of[id(params["fc.weight"])] == pytest.approx(0.1)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(params["fc.weight"]) in decayed and id(params["fc.bias"]) not in decayed
    # a schedule scales every group alike: the ratios stay
    off = build_optimizer(model, RunConfig().optim)
    assert len(off.param_groups) <= 2


def test_config_checks():
    with pytest.raises(ConfigError, match="optim.layer_decay must be in"):
        load_config(overrides=["optim.layer_decay=0"])
    with pytest.raises(ConfigError, match="train.freeze"):
        load_config(overrides=["train.freeze=head"])


@pytest.mark.parametrize(("name", "kw"), [
    ("resnet20", {}), ("vgg", {"blocks": 2, "width": 4}), ("mobilenet_v2",
                                                            {"width_mult": 0.25}),
    ("convnext_cifar", {}), ("lenet5", {}), ("speednet", {}),
])
def test_reset_classifier_gives_a_new_head(name, kw):
    model = cnnlab.create_model(name, num_classes=10, **kw).eval()
    model.reset_classifier(3)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert model.num_classes == 3
