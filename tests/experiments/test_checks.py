"""The recipe checks (experiments/checks.py): healthy models pass every one, and each bug
planted in cnnlab's pipeline (by monkeypatch) or in a model makes the right check fail."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab.config import RunConfig
from cnnlab.data.dataset import Dataset, ImageSet
from cnnlab.experiments import checks
from cnnlab.models import registry
from cnnlab.train.trainer import Trainer

# width 8 at lr 3e-3 learns digits within the checks' 100 steps (width 4 stays at chance);
# fp32, so that the numbers do not depend on whether this CPU has bf16
BASE = {"data.spec": "digits", "model.name": "vgg", "model.width": 8, "optim.lr": 3e-3,
        "train.device": "cpu", "train.precision": "fp32", "train.quiet": True}


def config(**extra) -> RunConfig:
    return RunConfig().set(**{**BASE, **extra})


def by_name(results) -> dict:
    return {r.name: r for r in results}


def register(monkeypatch, name: str, builder) -> None:
    """Register a test model for this test only (the registry is restored afterwards)."""
    registry._load_families()
    entry = registry.ModelEntry(name, builder, "test", 32, 1)
    monkeypatch.setitem(registry._REGISTRY, name, entry)


@pytest.mark.parametrize("extra", [{"model.norm": "bn"},
                                   {"model.norm": "bn", "model.dropout": 0.5}])
def test_healthy_models_pass_every_check(tmp_path, extra):
    results = checks.run_checks(config(**extra), tmp_path)
    assert [r.name for r in results] == list(checks.CHECKS)
    failed = [f"{r.name}: {r.message}" for r in results if not r.passed]
    assert not failed
    got = by_name(results)
    assert got["batch-gradient"].status == "NOTE"  # plain vgg: PASS (tests/cli)
    assert got["batch-gradient"].note == "batch norm mixes samples in training mode (expected)"
    assert got["batch-gradient"].numbers["leak"] > 1e-3  # before BN was put in eval mode
    init = got["init-loss"].numbers
    assert abs(init["prior_bias_gain"]) < 0.05  # digits is balanced: the prior gains ~0
    assert (tmp_path / "batch.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "checks.json").read_text())
    assert saved["passed"] and len(saved["checks"]) == len(checks.CHECKS)
    assert saved["checks"][0]["numbers"]["ln_classes"] == pytest.approx(2.302585)


def test_checks_are_reproducible():
    cfg = config()
    a = checks.check_overfit_batch(checks.prepare_checks(cfg), steps=40)
    b = checks.check_overfit_batch(checks.prepare_checks(cfg), steps=40)
    assert a.numbers["loss"] == b.numbers["loss"]


def test_shuffled_labels_fail_the_input_baseline(monkeypatch):
    real = checks.prepare_data

    def shuffled(cfg):  # (a) labels permuted against the training images
        ds = real(cfg)
        perm = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(0))
        train = ImageSet(ds.train.images, ds.train.labels[perm], ds.classes)
        return Dataset(ds.name, train, ds.test, ds.val, info=dict(ds.info))

    monkeypatch.setattr(checks, "prepare_data", shuffled)
    result = checks.check_input_baseline(checks.prepare_checks(config()))
    assert not result.passed, result.message
    assert "labels shuffled" in result.message


def test_augmentation_at_evaluation_fails_determinism(monkeypatch):
    real = checks.build_loaders

    def flip(x, y, g):  # a random horizontal flip per image
        mask = torch.rand(len(x), generator=g, device=x.device) < 0.5
        return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x), y

    def eval_augmented(*args, **kwargs):  # (b) the eval loader augments too
        loaders, stats = real(*args, **kwargs)
        loaders.val.augment = flip
        return loaders, stats

    monkeypatch.setattr(checks, "build_loaders", eval_augmented)
    result = checks.check_eval_determinism(checks.prepare_checks(config()))
    assert not result.passed
    assert "augmentation applied at evaluation" in result.message
    assert result.numbers["repeat_rel_diff"] > result.numbers["tolerance"]


@pytest.mark.parametrize("extra", [{"model.dropout": 0.3}, {"model.norm": "bn"}])
def test_missing_model_eval_fails_determinism(monkeypatch, extra):
    real = Trainer.evaluate

    def train_mode_evaluate(self, loader, tta="none"):  # (c) model.eval() forgotten
        self.model.eval = lambda: self.model
        try:
            return real(self, loader, tta)
        finally:
            del self.model.eval

    monkeypatch.setattr(Trainer, "evaluate", train_mode_evaluate)
    result = checks.check_eval_determinism(checks.prepare_checks(config(**extra)))
    assert not result.passed
    assert "model.eval()" in result.message
    assert "stored images" not in result.message  # the loader itself is right


def softmax_vgg(num_classes: int = 10, in_chans: int = 3, width: int = 8) -> nn.Module:
    """(d) a classifier whose outputs are probabilities: softmax before the loss."""
    net = registry.create_model("vgg", num_classes=num_classes, in_chans=in_chans, width=width)
    return nn.Sequential(net, nn.Softmax(dim=1))


def test_softmax_before_the_loss_fails_logits_and_overfit(monkeypatch):
    register(monkeypatch, "softmax_vgg", softmax_vgg)
    setup = checks.prepare_checks(config(**{"model.name": "softmax_vgg"}))
    logits = checks.check_logits(setup)
    assert not logits.passed
    assert "softmax applied before the loss" in logits.message
    overfit = checks.check_overfit_batch(setup, steps=100)
    assert not overfit.passed
    assert overfit.numbers["loss"] > 1.0  # log-softmax of probabilities: >= 1.46 on 10 classes


class BatchMixer(nn.Module):
    """(e) a conv, then a reshape that reads (B, C, H, W) memory as if it were
    (C, B, H, W): every "sample" now holds channels of several images; then a valid head."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))  # (B, W, H, W')
        b, c = h.shape[:2]
        h = h.transpose(0, 1).reshape(b, c, *h.shape[2:])  # the bug: mixes the batch
        return self.fc(h.mean((2, 3)))  # (B, classes)


def test_reshape_across_the_batch_fails_the_gradient_check(monkeypatch):
    register(monkeypatch, "batch_mixer", BatchMixer)
    setup = checks.prepare_checks(config(**{"model.name": "batch_mixer"}))
    result = checks.check_batch_gradient(setup)
    assert not result.passed and result.note == ""
    assert "mixes samples across the batch" in result.message
    assert result.numbers["leak"] > 0.5


def test_last_linear_finds_the_classifier():
    net = registry.create_model("vgg", num_classes=10, in_chans=1, width=4)
    assert checks.last_linear(net, 10) is net.fc
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 3))
    assert checks.last_linear(plain, 3) is plain[3]
    assert checks.last_linear(plain, 5) is None  # not the class count
