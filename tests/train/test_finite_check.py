"""The deferred non-finite check: no host read per step, a rollback to the last good check."""

import math

import pytest
import torch

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.train import fit
from cnnlab.train.hardware import resolve_finite_check_every


class PoisonLoss(cnnlab.train.Callback):
    """Makes the loss of optimizer step ``at`` (counted from 1) NaN."""

    def __init__(self, at: int):
        self.at = at

    def on_loss(self, trainer, loss):
        return loss * math.nan if trainer.step + 1 == self.at else loss


def _run(toy, cfg, poison_at=None, every=1, out=None):
    torch.manual_seed(0)
    model = cnnlab.create_model("vgg", num_classes=toy.num_classes, blocks=2, layers=1,
                                width=8, input_size=toy.train.shape[0])
    cbs = [PoisonLoss(poison_at)] if poison_at else []
    cfg = cfg.set(**{"train.finite_check_every": every, "data.augment": "flip-crop"})
    return fit(model, toy, cfg, callbacks=cbs, out_dir=out, progress=False)


def _equal(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_deferred_check_changes_nothing_while_the_loss_is_finite(toy, tiny_cfg):
    every_step, deferred = _run(toy, tiny_cfg), _run(toy, tiny_cfg, every=4)
    assert every_step.status == deferred.status == "ok"
    assert _equal(every_step, deferred)
    assert every_step.history == [dict(h, epoch_time=e["epoch_time"],
                                       images_per_s=e["images_per_s"])
                                  for h, e in zip(deferred.history, every_step.history)]


def test_a_bad_window_rolls_back_to_the_last_good_check(toy, tiny_cfg, tmp_path):
    # 10 steps per epoch (160 training images / 16); NaN at step 7: checked every 4 steps,
    # the check after step 8 sees it and returns to the state after step 4
    deferred = _run(toy, tiny_cfg, poison_at=7, every=4, out=tmp_path / "r")
    assert deferred.status == "diverged" and deferred.summary["steps"] == 4
    assert "between steps 5 and 8" in deferred.message and "rolled back to step 4" \
        in deferred.message
    # the same weights as a per-step-checked run whose step 5 is bad (it stops after step 4)
    reference = _run(toy, tiny_cfg, poison_at=5, every=1)
    assert reference.status == "diverged" and reference.summary["steps"] == 4
    assert _equal(deferred, reference)
    assert all(torch.isfinite(v).all() for v in deferred.model.state_dict().values()
               if v.is_floating_point())
    assert (tmp_path / "r" / "summary.json").exists()


def test_the_epoch_end_is_a_check_and_a_rollback_keeps_finished_epochs(toy, tiny_cfg):
    # every 7 steps: checks after steps 7, 10 (epoch end), 17, ...; NaN at step 12
    res = _run(toy, tiny_cfg.set(**{"train.epochs": 3}), poison_at=12, every=7)
    assert res.status == "diverged" and res.summary["steps"] == 10
    assert len(res.history) == 1 and res.summary["epochs_completed"] == 1
    assert "between steps 11 and 14" in res.message


def test_step_checkpoints_are_checks(toy, tiny_cfg, tmp_path):
    # checkpoint every 3 steps, checks every 50: the checkpoint after step 6 must not hold
    # the NaN of step 5; the run rolls back to step 3
    cfg = tiny_cfg.set(**{"train.checkpoint_every": 3})
    res = _run(toy, cfg, poison_at=5, every=50, out=tmp_path / "r")
    assert res.status == "diverged" and res.summary["steps"] == 3
    last = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=False)
    assert last["step"] <= 3
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_auto_interval_and_bad_values():
    assert resolve_finite_check_every(0, torch.device("cpu")) == 1
    assert resolve_finite_check_every(0, torch.device("cuda")) == 50
    assert resolve_finite_check_every(8, torch.device("cuda")) == 8
    from cnnlab.config import RunConfig

    with pytest.raises(ConfigError, match="finite_check_every"):
        RunConfig().set(**{"train.finite_check_every": -1})
