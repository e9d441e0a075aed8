"""The speed-record options, each on its own: weight averaging, alternating flips, the
per-1,024 parametrization, norm-bias lr scale, frozen norm scales, Muon, the warm-up start,
the allocator setting that keeps freed memory resident."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.config import OptimConfig, RunConfig
from cnnlab.data.dataset import ImageSet
from cnnlab.data.loader import DeviceLoader
from cnnlab.errors import ConfigError
from cnnlab.train import WeightAveraging, fit
from cnnlab.train.optim import (
    _orthogonalize,
    build_optimizer,
    freeze_norm_scales,
    lr_factor,
    norm_biases,
    per_1024,
)


def _fake_trainer(model, steps_per_epoch=4, epochs=2):
    return SimpleNamespace(model=model, epochs=epochs, steps_per_epoch=steps_per_epoch,
                           out_dir=None, config=RunConfig())


@pytest.mark.parametrize("warmup", [0.0, 3.0])
def test_ema_matches_its_formula_with_warmup(warmup):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    tr = _fake_trainer(model)
    ema = WeightAveraging("ema", decay=0.9, every=2, warmup=warmup)
    ema.on_train_begin(tr)
    expect = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    total = tr.epochs * tr.steps_per_epoch
    for step in range(1, 7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))  # a "training step"
            model[1].running_mean.add_(1.0)
        ema.on_batch_end(tr, step, None)
        if step % 2 == 0:
            d = 0.9 ** 2 * ((step / total) ** warmup if warmup else 1.0)
            for k, v in model.state_dict().items():
                if k in expect:
                    expect[k] = d * expect[k] + (1 - d) * v
    for k, v in expect.items():
        assert torch.allclose(ema.average[k], v, atol=1e-6), k
    raw = model[0].weight.clone()
    assert not torch.allclose(raw, ema.average["0.weight"])  # ema: weights left alone
    ema.on_train_end(tr)  # the model ends as the average
    assert torch.allclose(model[0].weight, expect["0.weight"])
    assert torch.allclose(model[1].running_mean, expect["1.running_mean"])


def test_lookahead_pulls_the_weights_to_the_average():
    model = nn.Linear(2, 2)
    tr = _fake_trainer(model)
    la = WeightAveraging("lookahead", decay=0.5, every=1)
    la.on_train_begin(tr)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    la.on_batch_end(tr, 1, None)
    assert torch.allclose(model.weight, start + 1.0)  # halfway back
    assert torch.allclose(la.average["weight"], model.weight)


def test_ema_through_fit_evaluates_and_checkpoints_the_average(toy, tiny_cfg, tmp_path):
    torch.manual_seed(0)
    m = cnnlab.create_model("vgg", num_classes=4, blocks=2, layers=1, width=8, input_size=16,
                               norm="bn")
    cfg = tiny_cfg.set(**{"train.average": "ema", "train.ema_decay": 0.5})
    r = fit(m, toy, cfg, out_dir=tmp_path / "r", progress=False)
    saved = torch.load(tmp_path / "r" / "checkpoints" / "average.pt", weights_only=True)
    for k, v in r.model.state_dict().items():
        assert torch.equal(saved["model"][k], v)
    with pytest.raises(ConfigError, match="train.average"):
        tiny_cfg.set(**{"train.average": "swa"})


def _loader(n=10, seed=0):
    # image i holds the values i*100 + column index, so a flip is visible and identifiable
    cols = torch.arange(4, dtype=torch.uint8).view(1, 1, 4, 1)
    images = (torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1) * 10 + cols).expand(n, 4, 4, 1)
    data = ImageSet(images.contiguous(), torch.arange(n), [str(i) for i in range(n)])
    return DeviceLoader(data, batch_size=3, shuffle=True, drop_last=False, seed=seed,
                        alternating_flip=True)


def _flipped_per_epoch(loader, epochs=4):
    out = []
    for _ in range(epochs):
        flipped = {}
        for x, _y in loader:
            for img in x:  # (1, 4, 4) in [0, 1]
                v = (img[0, 0] * 255).round().long()
                flipped[int(v.min()) // 10] = bool(v[0] > v[-1])
        out.append([flipped[i] for i in range(len(flipped))])
    return torch.tensor(out)


def test_alternating_flip_flips_every_image_every_other_epoch():
    f = _flipped_per_epoch(_loader())
    assert f.shape == (4, 10)
    assert (f[1:] != f[:-1]).all()  # each image flips exactly when it did not before
    assert 0 < f[0].sum() < 10  # epoch 0: a random subset
    assert torch.equal(f, _flipped_per_epoch(_loader()))  # seeded
    assert not torch.equal(f[0], _flipped_per_epoch(_loader(seed=1))[0])


def test_per_1024_formula_and_groups():
    lr_t, wd_t = per_1024(11.5, 0.0153, 0.85, 512)
    k = 1 + 1 / (1 - 0.85)
    assert lr_t == pytest.approx(11.5 * 512 / 1024 / k)
    assert wd_t == pytest.approx(0.0153 * 512 / 1024 / k)
    m = cnnlab.create_model("speednet-s")
    cfg = OptimConfig(name="sgd", per_1024=True, lr=11.5, momentum=0.85, weight_decay=0.0153,
                      decay_norm_and_bias=True, norm_bias_lr_scale=64.0)
    opt = build_optimizer(m, cfg, batch_size=512)
    biases = {id(p) for p in norm_biases(m)}
    (bias_group,) = [g for g in opt.param_groups if {id(p) for p in g["params"]} == biases]
    other = [g for g in opt.param_groups if g is not bias_group]
    assert bias_group["lr"] == pytest.approx(64 * lr_t)
    assert all(g["lr"] == pytest.approx(lr_t) for g in other)
    for g in opt.param_groups:  # the same decayed fraction per step in every group
        assert g["lr"] * g["weight_decay"] == pytest.approx(wd_t)
    with pytest.raises(ConfigError, match="per_1024"):
        RunConfig().set(**{"optim.per_1024": True, "optim.name": "adam"})


def test_norm_bias_lr_scale_without_per_1024():
    m = cnnlab.create_model("vgg", num_classes=4, blocks=2, layers=1, width=8, input_size=16,
                               norm="bn")
    opt = build_optimizer(m, OptimConfig(name="sgd", lr=0.1, norm_bias_lr_scale=8.0))
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    nb = norm_biases(m)
    assert nb and all(lrs[id(p)] == pytest.approx(0.8) for p in nb)
    assert sum(lr == pytest.approx(0.1) for lr in lrs.values()) == len(lrs) - len(nb)


def test_frozen_norm_scales_stay_one_after_training(toy, tiny_cfg):
    torch.manual_seed(0)
    m = cnnlab.create_model("vgg", num_classes=4, blocks=2, layers=1, width=8, input_size=16,
                               norm="bn")
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.fill_(3.0)
    r = fit(m, toy, tiny_cfg.set(**{"optim.freeze_norm_scale": True, "train.epochs": 1}),
            progress=False)
    bns = [mod for mod in r.model.modules() if isinstance(mod, nn.BatchNorm2d)]
    assert bns and all(torch.all(b.weight == 1) and not b.weight.requires_grad for b in bns)
    assert any(b.bias.abs().sum() > 0 for b in bns)  # the biases did train
    assert freeze_norm_scales(nn.Linear(2, 2)) == 0


def test_muon_orthogonalizes_and_keeps_the_filter_norm():
    g = torch.randn(16, 72) * torch.logspace(-2, 1, 72)  # badly conditioned
    s = torch.linalg.svdvals(_orthogonalize(g).float())
    assert s.min() > 0.5 and s.max() < 1.3  # every direction moves about equally
    torch.manual_seed(0)
    m = cnnlab.create_model("speednet-s")
    opt = build_optimizer(m, OptimConfig(name="sgd", lr=0.01, muon=True, muon_lr=0.1))
    conv = m.blocks[1].conv2.weight
    assert any(g.get("muon") and any(p is conv for p in g["params"]) for g in opt.param_groups)
    m(torch.randn(4, 3, 32, 32)).square().mean().backward()
    opt.step()
    # rescaled to sqrt(out) before a step of Frobenius norm lr * sqrt(out)
    assert conv.norm().item() == pytest.approx(conv.shape[0] ** 0.5, rel=0.15)


def test_warmup_from():
    cfg = OptimConfig(schedule="warmup-linear", warmup_epochs=1, warmup_from=0.2,
                      min_lr_ratio=0.07)
    assert lr_factor(cfg, 0, 100, 10) == pytest.approx(0.2 + 0.8 * 0.1)
    assert lr_factor(cfg, 9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 100, 100, 10) == pytest.approx(0.07)


def test_progressive_resizing_shrinks_only_the_first_epochs():
    data = ImageSet(torch.zeros(8, 16, 16, 3, dtype=torch.uint8), torch.arange(8),
                    [str(i) for i in range(8)])
    ld = DeviceLoader(data, batch_size=4, seed=0, low_res=8, low_res_epochs=2)
    sides = []
    for _ in range(3):
        sides.append({tuple(x.shape[-2:]) for x, _ in ld})
    assert sides == [{(8, 8)}, {(8, 8)}, {(16, 16)}]


def test_flip_translate_tta_weights_views_as_the_record():
    from cnnlab.train.trainer import Trainer

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(1), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(2, 3, 8, 8)
    out, plain = Trainer._tta_logits(SimpleNamespace(model=m), x, "flip-translate")

    def mirror(v):
        return (m(v) + m(v.flip(-1))) / 2

    pad = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = (mirror(pad[..., :8, :8]) + mirror(pad[..., 2:, 2:])) / 2
    assert torch.allclose(out, mirror(x) / 2 + shifted / 2, atol=1e-6)
    assert torch.allclose(plain, m(x))


_RSS_AFTER_FREE = """
import sys
import torch
from cnnlab.train.hardware import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
x = torch.ones(64 << 18)  # 64 MiB of fp32, above glibc's largest mmap threshold
before = rss_mib()
del x
print(applied, before - rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_keep_freed_memory_keeps_a_large_freed_block_resident():
    def released_mib(mode):
        out = subprocess.run([sys.executable, "-c", _RSS_AFTER_FREE, mode], check=True,
                             capture_output=True, text=True).stdout.split()
        return out[0] == "True", float(out[1])

    applied, released = released_mib("keep")
    _, released_by_default = released_mib("default")
    assert released_by_default > 60  # glibc unmapped the block on free
    assert applied and released < 4  # kept in the heap for the next batch


def test_keep_freed_memory_setting_is_recorded_and_changes_no_result(toy, tiny_cfg):
    runs = {}
    for setting in ("false", "true"):
        torch.manual_seed(0)
        m = cnnlab.create_model("vgg", num_classes=4, blocks=2, layers=1, width=8,
                                   input_size=16)
        runs[setting] = fit(m, toy, tiny_cfg.set(**{"train.keep_freed_memory": setting,
                                                    "train.epochs": 1}), progress=False)
    assert runs["false"].summary["keep_freed_memory"] is False
    assert runs["true"].summary["keep_freed_memory"] is (sys.platform.startswith("linux"))
    assert runs["true"].summary["final_train_loss"] == runs["false"].summary["final_train_loss"]
    assert all(torch.equal(a, b) for a, b in zip(runs["true"].model.state_dict().values(),
                                                 runs["false"].model.state_dict().values()))
    with pytest.raises(ConfigError, match="keep_freed_memory"):
        tiny_cfg.set(**{"train.keep_freed_memory": "yes"})
