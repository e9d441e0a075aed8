"""Exact resume: a run killed with SIGKILL mid-epoch and resumed ends bitwise identical."""

import csv
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import cnnlab
from cnnlab.errors import TrainingError
from cnnlab.train import fit
from cnnlab.train.checkpoint import load_checkpoint

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from torch import nn
    import cnnlab
    from cnnlab.data.sources.synthetic import toy_dataset
    from cnnlab.train import Callback, fit

    out, kill_at, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    ds = toy_dataset(n=192, size=16, test=32)
    cfg = cnnlab.RunConfig().set(**{
        "train.epochs": 3, "data.batch_size": 16, "train.checkpoint_every": 4,
        "data.augment": "flip-crop", "train.quiet": True, "optim.name": "sgd",
        "optim.lr": 0.05, "optim.schedule": "cosine", "optim.weight_decay": 5e-4,
    })

    class Killer(Callback):
        def on_batch_end(self, trainer, step, loss):
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(0)
    model = nn.Sequential(  # dropout draws from the global torch RNG: restored on resume
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 4))
    r = fit(model, ds, cfg, out_dir=out, resume="auto" if resume else False,
            callbacks=[Killer()] if kill_at else None)
    torch.save(r.model.state_dict(), os.path.join(out, "final.pt"))
""")


def _run(script, out, kill_at, resume):
    return subprocess.run([sys.executable, str(script), str(out), str(kill_at), resume],
                          capture_output=True, text=True, timeout=300)


def _metrics(path):
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in ("epoch_time", "images_per_s")}
                for row in csv.DictReader(f)]


def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ref = _run(script, tmp_path / "ref", 0, "0")
    assert ref.returncode == 0, ref.stderr

    killed = _run(script, tmp_path / "cut", 15, "0")  # step 15: mid epoch 2; last ckpt at 12
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "cut" / "final.pt").exists()
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert state["step"] == 12 and state["loader"]["batch"] > 0  # really mid-epoch

    resumed = _run(script, tmp_path / "cut", 0, "1")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "ref" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "final.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(tmp_path / "ref" / "metrics.csv") == _metrics(tmp_path / "cut" / "metrics.csv")


def _tiny(toy):
    torch.manual_seed(0)
    return cnnlab.create_model("vgg", num_classes=4, blocks=2, layers=1, width=8, input_size=16)


def test_resume_with_different_config_is_refused(toy, tiny_cfg, tmp_path):
    fit(_tiny(toy), toy, tiny_cfg, out_dir=tmp_path / "r", progress=False)
    changed = tiny_cfg.set(**{"optim.lr": 0.5, "model.width": 16})
    with pytest.raises(TrainingError, match=r"different config \(model.width: 8 -> 16, optim.lr"):
        fit(_tiny(toy), toy, changed, out_dir=tmp_path / "r", resume=True, progress=False)


def test_resume_without_checkpoint_is_an_error(toy, tiny_cfg, tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume"):
        fit(_tiny(toy), toy, tiny_cfg, out_dir=tmp_path / "empty", resume=True, progress=False)


def test_garbage_checkpoint_falls_back_to_previous(toy, tiny_cfg, tmp_path):
    fit(_tiny(toy), toy, tiny_cfg.set(**{"train.epochs": 2}), out_dir=tmp_path / "r",
        progress=False)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = load_checkpoint(last)
    assert state["epoch"] == 1  # the previous (epoch 1) checkpoint
    assert any("unreadable" in str(w.message) for w in caught)
    (tmp_path / "r" / "checkpoints" / "last.prev.pt").write_bytes(b"garbage")
    with pytest.raises(TrainingError, match="no usable checkpoint"):
        load_checkpoint(last)


def test_finished_run_resumes_to_extra_epochs(toy, tiny_cfg, tmp_path):
    fit(_tiny(toy), toy, tiny_cfg, out_dir=tmp_path / "r", progress=False)
    r = fit(_tiny(toy), toy, tiny_cfg.set(**{"train.epochs": 3}), out_dir=tmp_path / "r",
            resume=True, progress=False)
    assert [h["epoch"] for h in r.history] == [1, 2, 3]
