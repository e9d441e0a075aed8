"""Issue 11 at the library level: the divergence rule, best epoch by the monitor,
checkpoint rotation after a fallback, atomic writes with the user's umask."""

import math
import os

import pytest
import torch

from cnnlab import status as st
from cnnlab.train.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.train.run import fit
from cnnlab.utils.io import atomic_write_text


def test_divergence_rule():
    assert st.divergence_bound(10) == pytest.approx(1e3 * math.log(10))
    assert st.is_diverged(9e13, 10) and st.is_diverged(2e6, 10)  # the two runs
    assert st.is_diverged(math.inf, 10) and st.is_diverged(math.nan, 10)
    assert not st.is_diverged(math.log(10), 10) and not st.is_diverged(50.0, 2)
    # a model that starts with a large loss is judged against it
    assert not st.is_diverged(5e3, 10, initial_loss=800.0)
    assert st.is_diverged(1e4, 10, initial_loss=800.0)
    assert st.is_diverged(5e3, 10, initial_loss=math.nan)  # unknown: ln(classes) alone


def test_run_status_and_stored_status_agree():
    assert st.run_status("ok", 0.1, 10) == "stuck" == st.stored_status("stuck", 0.1, 10)
    assert st.run_status("stopped", 0.9, 10) == "stopped"
    assert st.run_status("diverged", 0.1, 10) == "diverged"


def test_exploding_loss_is_diverged_in_the_trainer(toy, tiny_cfg):
    from cnnlab.models import create_model

    model = create_model("vgg", num_classes=4, in_chans=3, blocks=2, layers=1, width=8,
                         norm="bn")
    res = fit(model, toy, tiny_cfg.set(**{"optim.name": "sgd", "optim.lr": 1e6}))
    assert res.status == "diverged" and res.summary["status"] == "diverged"
    assert "exploded" in res.message


@pytest.mark.parametrize("early_stopping", [True, False])
def test_best_fields_follow_the_monitor(toy, tiny_cfg, early_stopping):
    from cnnlab.models import create_model

    torch.manual_seed(0)
    model = create_model("vgg", num_classes=4, in_chans=3, blocks=2, layers=1, width=8)
    cfg = tiny_cfg.set(**{"train.epochs": 5, "train.monitor": "val_loss", "optim.lr": 3e-2,
                          "train.early_stopping": early_stopping, "train.patience": 2})
    res = fit(model, toy, cfg)
    s = res.summary
    best = min(res.history, key=lambda h: h["val_loss"])
    assert s["monitor"] == "val_loss" and s["best_epoch"] == best["epoch"]
    # with early stopping this is the epoch it restored (EarlyStopping.best_epoch)
    assert s["best_val_loss"] == best["val_loss"] and s["best_val_acc"] == best["val_acc"]


def test_unreadable_last_is_never_rotated_over_the_good_previous(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1})
    save_checkpoint(path, {"model": {}, "epoch": 2})
    path.write_bytes(b"")  # damaged: empty
    with pytest.warns(UserWarning, match="empty file"):
        assert load_checkpoint(path)["epoch"] == 1
    save_checkpoint(path, {"model": {}, "epoch": 3})
    assert load_checkpoint(path.with_suffix(".prev.pt"))["epoch"] == 1
    assert load_checkpoint(path)["epoch"] == 3
    # garbage that is not a zip is not rotated either, even without a load first
    path.write_bytes(b"garbage")
    save_checkpoint(path, {"model": {}, "epoch": 4})
    assert load_checkpoint(path.with_suffix(".prev.pt"))["epoch"] == 1


def test_failed_save_leaves_both_checkpoints(tmp_path, monkeypatch):
    import errno

    import cnnlab.train.checkpoint as ckpt

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1})
    save_checkpoint(path, {"model": {}, "epoch": 2})

    def full(p, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(p))

    monkeypatch.setattr(ckpt, "write_temp", full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, {"model": {}, "epoch": 3})
    assert load_checkpoint(path)["epoch"] == 2
    assert load_checkpoint(path.with_suffix(".prev.pt"))["epoch"] == 1


def test_atomic_write_uses_the_umask_and_names_the_path_on_failure(tmp_path):
    old = os.umask(0o027)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640

    from cnnlab.utils.io import atomic_write

    def fail(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as e:
        atomic_write(tmp_path / "b.txt", fail)
    assert e.value.filename == str(tmp_path / "b.txt")
    assert [q.name for q in tmp_path.iterdir()] == ["a.txt"]


def test_refused_fit_leaves_no_folder(toy, tiny_cfg, tmp_path):
    from cnnlab.errors import TrainingError
    from cnnlab.models import create_model

    model = create_model("vgg", num_classes=4, in_chans=1, blocks=2, layers=1, width=8)
    with pytest.raises(TrainingError, match="input channels"):
        fit(model, toy, tiny_cfg, out_dir=tmp_path / "x" / "run")
    assert not (tmp_path / "x").exists()
