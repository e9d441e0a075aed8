"""The hook interface: the order hooks run in, and regularizers as callbacks from the config."""

import torch

import cnnlab
from cnnlab.train import (
    Callback,
    Penalty,
    PreciseBN,
    ProximalL1,
    SparsityReport,
    callbacks_from_config,
    fit,
)


def _model():
    torch.manual_seed(0)
    return cnnlab.create_model("vgg", num_classes=4, blocks=2, layers=1, width=8, input_size=16)


def test_callbacks_from_config(tiny_cfg):
    def kinds(**over):
        return [type(cb) for cb in callbacks_from_config(tiny_cfg.set(**over))]

    assert kinds() == []
    assert kinds(**{"optim.l2": 1e-3}) == [Penalty]
    assert kinds(**{"optim.l1": 1e-3}) == [Penalty, SparsityReport]
    assert kinds(**{"optim.l1": 1e-3, "optim.proximal_l1": True}) == [ProximalL1, SparsityReport]
    assert kinds(**{"optim.l1": 1e-3, "optim.proximal_l1": True, "optim.l2": 1e-3}) == \
        [Penalty, ProximalL1, SparsityReport]
    assert kinds(**{"optim.group_lasso": 1e-3, "train.precise_bn": 4}) == \
        [Penalty, PreciseBN, SparsityReport]
    (prox,) = [cb for cb in callbacks_from_config(tiny_cfg.set(**{
        "optim.l1": 0.5, "optim.proximal_l1": True, "optim.l2": 0.1})) if isinstance(cb, Penalty)]
    assert (prox.l1, prox.l2) == (0.0, 0.1)  # proximal: l1 is a step, not a loss term


def test_hooks_run_in_the_documented_order(toy, tiny_cfg):
    calls = []

    class Record(Callback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                calls.append(name)
            return super().__getattribute__(name)

    cfg = tiny_cfg.set(**{"train.epochs": 1, "data.val_fraction": 0.0})  # 2 steps of 16
    fit(_model(), toy.train.subset(torch.arange(32)), cfg, callbacks=[Record()], progress=False)
    step = ["on_batch_begin", "on_loss", "on_after_step", "on_batch_end"]
    assert calls == ["on_train_begin", "on_epoch_begin", *step, *step, "on_epoch_end",
                     "on_train_end", "on_fit_end", "on_summary"]


def test_a_penalty_callback_is_the_config_penalty(toy, tiny_cfg):
    """optim.l2 and an explicit Penalty(l2=...) callback train to the same weights."""
    cfg = tiny_cfg.set(**{"train.epochs": 1})
    a = fit(_model(), toy, cfg.set(**{"optim.l2": 1e-2}), progress=False).model.state_dict()
    b = fit(_model(), toy, cfg, callbacks=[Penalty(l2=1e-2)], progress=False).model.state_dict()
    c = fit(_model(), toy, cfg, progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_on_loss_and_on_summary_from_a_user_callback(toy, tiny_cfg):
    class ZeroLoss(Callback):  # a loss without gradient: the weights cannot move
        def on_loss(self, trainer, loss):
            return loss * 0.0

        def on_summary(self, trainer, summary):
            summary["note"] = "zeroed"

    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items() if "weight" in k}
    r = fit(model, toy, tiny_cfg.set(**{"optim.name": "sgd", "train.epochs": 1}),
            callbacks=[ZeroLoss()], progress=False)
    after = r.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert r.summary["note"] == "zeroed"


def test_early_stopping_waits_until_start_from_epoch():
    """Flat epochs before start_from_epoch never run out the patience; the best still
    counts from the first epoch on."""
    from types import SimpleNamespace

    from cnnlab.train.callbacks import EarlyStopping

    def run(start):
        cb = EarlyStopping("val_acc", patience=2, restore_best=False, start_from_epoch=start)
        trainer = SimpleNamespace(stop_training=False)
        for epoch, acc in enumerate([0.1, 0.1, 0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5]):
            cb.on_epoch_end(trainer, epoch, {"val_acc": acc})
            if trainer.stop_training:
                return epoch, cb.best_epoch
        return None, cb.best_epoch

    assert run(0) == (2, 0)  # two flat epochs after the first: stopped at chance
    assert run(5) == (7, 5)  # waits, learns at epoch 5, then the patience runs out
