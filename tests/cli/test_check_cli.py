"""``cnnlab check``: one line per check, exit 0 / 1 / 2, checks.json and batch.png."""

from __future__ import annotations

import json

import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.models import registry

SMALL = ["--data", "digits", "--set", "model.width=8", "--set", "optim.lr=3e-3",
         "--set", "train.precision=fp32", "--device", "cpu", "--quiet"]


def test_healthy_vgg_passes_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "chk"
    assert main(["check", "vgg", *SMALL, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["PASS", name] for name in ("init-loss", "logits", "input-baseline", "overfit-batch",
                                    "batch-gradient", "eval-determinism", "batch-view")]
    assert lines[-1].startswith("7 of 7 checks passed in ")
    saved = json.loads((out / "checks.json").read_text())
    assert saved["passed"] and saved["model"] == "vgg" and saved["data"] == "digits"
    assert saved["checks"][2]["numbers"]["steps"] == 100
    assert (out / "batch.png").stat().st_size > 1000


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["check", "vgq", *SMALL, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'vgq'" in err and len(err.strip().splitlines()) == 1
    assert main(["check", "vgg", *SMALL, "--only", "logit"]) == 2
    assert "unknown check 'logit'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


class BatchMixer(nn.Module):
    """A conv, then a reshape that reads (B, C, H, W) as (C, B, H, W): mixes samples."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)  # (B, width, H, W)
        h = h.transpose(0, 1).reshape(h.shape)  # the bug
        return self.fc(h.mean((2, 3)))


def test_a_planted_bug_fails_with_exit_1(tmp_path, capsys, monkeypatch):
    registry._load_families()
    monkeypatch.setitem(registry._REGISTRY, "batch_mixer",
                        registry.ModelEntry("batch_mixer", BatchMixer, "test", 32, 1))
    out = tmp_path / "chk"
    assert main(["check", "batch_mixer", *SMALL, "--out", str(out), "--json",
                 "--only", "logits,batch-gradient"]) == 1
    shown = json.loads(capsys.readouterr().out)
    assert not shown["passed"]
    assert [(c["name"], c["status"]) for c in shown["checks"]] == [
        ("logits", "PASS"), ("batch-gradient", "FAIL")]
    assert "mixes samples across the batch" in shown["checks"][1]["message"]
    assert json.loads((out / "checks.json").read_text())["checks"] == shown["checks"]
