import pytest

from cnnlab.cli import main

SMALL = ["--set", "data.limit=160", "--set", "model.width=4", "--set", "model.blocks=2",
         "--quiet"]


def test_tensorboard_logs_metrics_and_lr_per_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "vgg", "--data", "digits", "--epochs", "2", "--out", str(out),
                 "--set", "train.tensorboard=true", *SMALL]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr"} <= tags
    assert [e.step for e in events.Scalars("val_acc")] == [1, 2]
    assert events.Scalars("lr")[0].value == pytest.approx(1e-3)


def test_tensorboard_missing_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    code = main(["train", "vgg", "--data", "digits", "--epochs", "1", "--out",
                 str(tmp_path / "r"), "--set", "train.tensorboard=true", *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert 'pip install "cnnlab[tensorboard]"' in err
