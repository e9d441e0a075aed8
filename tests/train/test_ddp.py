"""Data-parallel training (``cnnlab train --nproc N``): torch DDP over gloo on CPU.

Two processes equal one process that sees the combined batch; rank 0 alone writes; a
2-process run killed with SIGKILL and resumed ends bitwise equal to an uninterrupted one;
the loader's shards are disjoint and cover the epoch; bad launcher input is one line.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.cli import main
from cnnlab.data.dataset import ImageSet
from cnnlab.data.loader import DeviceLoader
from cnnlab.experiments.run import build_model
from cnnlab.train.checkpoint import load_checkpoint, seed_everything
from cnnlab.train.run import prepare_data, saved_config

SRC = str(Path(__file__).resolve().parents[2] / "src")
# a tiny VGG without batch norm (norm none), plain SGD in fp32: float-exact comparisons
TINY = ["vgg", "--data", "digits", "--quiet", "--set", "model.width=4", "--set",
        "model.blocks=2", "--set", "optim.name='sgd'", "--set", "optim.lr=0.05",
        "--set", "train.precision='fp32'", "--set", "data.augment='none'"]


def _cli(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "cnnlab", "train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, **kw)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def _metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in ("epoch_time", "images_per_s")}
                for row in csv.DictReader(f)]


# -- the loader's shards --------------------------------------------------------------------

def _image_set(n: int) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 4, 4, 1), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.arange(n), [str(i) for i in range(n)])  # label = index


def test_rank_slices_are_the_combined_batch_disjoint_and_cover_the_epoch():
    ds = _image_set(100)
    whole = DeviceLoader(ds, 24, seed=3)  # one process, the combined batch
    ranks = [DeviceLoader(ds, 8, seed=3, rank=r, world_size=3) for r in range(3)]
    for epoch in (0, 1):
        for ld in (whole, *ranks):
            ld.set_epoch(epoch)
        per_rank = [[y for _, y in ld] for ld in ranks]
        combined = [y for _, y in whole]
        assert all(len(p) == len(combined) == 4 for p in per_rank)  # 100 // 24 steps each
        for step, y in enumerate(combined):
            assert torch.equal(torch.cat([p[step] for p in per_rank]), y)
        seen = torch.cat([y for p in per_rank for y in p])
        assert len(seen) == len(set(seen.tolist())) == 96  # disjoint; drop_last keeps 96
    # evaluation (no shuffle, keep the short batch): every image exactly once
    evals = [DeviceLoader(ds, 16, shuffle=False, drop_last=False, rank=r, world_size=3)
             for r in range(3)]
    seen = sorted(int(v) for ld in evals for _, y in ld for v in y)
    assert seen == list(range(100))


def test_ranks_draw_their_own_augmentation():
    ds = _image_set(64)
    a, b = (DeviceLoader(ds, 8, seed=0, rank=r, world_size=2) for r in (0, 1))
    assert a.augment_seed(0) == DeviceLoader(ds, 16, seed=0).augment_seed(0)  # rank 0: single
    assert len({a.augment_seed(0), b.augment_seed(0), a.augment_seed(1)}) == 3


# -- bad input: one line, nothing started ---------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc must be a whole number >= 1 (processes on this machine), got '0'"),
    (["--nproc", "-2"], "--nproc must be a whole number >= 1"),
    (["--nproc", "two"], "--nproc must be a whole number >= 1 (processes on this machine), "
                         "got 'two'"),
    (["--nproc", "1.5"], "--nproc must be a whole number >= 1"),
    (["--nnodes", "2"], "go with --nproc N"),
    (["--nproc", "2", "--nnodes", "2"], "--nnodes 2 needs --master-addr"),
    (["--nproc", "2", "--nnodes", "2", "--node-rank", "2", "--master-addr", "h"],
     "--node-rank must lie in 0..1 for --nnodes 2, got 2"),
    (["--nproc", "2", "--master-port", "70000"], "--master-port must be a TCP port"),
    (["--nproc", "4", "--set", "data.batch_size=30"],
     "data.batch_size = 30 does not split over 4 processes (it is the global batch; each "
     "process takes batch_size / 4); use a multiple of 4, e.g. --set data.batch_size=32"),
    (["--nproc", "2", "--set", "data.drop_last=false"], "data.drop_last = false cannot run"),
    (["--nproc", "2", "--set", "train.sync_bn=true", "--device", "cpu"],
     "train.sync_bn needs CUDA GPUs: torch's SyncBatchNorm does not run on cpu tensors"),
])
def test_bad_launch_input_is_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = main(["train", *TINY, "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


# -- two processes --------------------------------------------------------------------------

def test_two_processes_equal_one_process_with_the_combined_batch(tmp_path):
    common = [*TINY, "--epochs", "2", "--set", "data.limit=400", "--set", "data.batch_size=32"]
    assert main(["train", *common, "--out", str(tmp_path / "one")]) == 0
    two = _cli([*common, "--nproc", "2", "--out", "two"], cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert "(fp32), 2 processes" in two.stdout  # the result line; --quiet hides the rest

    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"max abs weight difference, 2 processes vs 1: {diff:.3g}")
    assert diff < 1e-5  # gradient all-reduce vs one batch: float rounding only
    cfg = saved_config(tmp_path / "one")
    seed_everything(cfg.train.seed)  # the weights both runs started from
    start = build_model(cfg, prepare_data(cfg)).state_dict()
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1000 * diff  # they trained

    # rank 0 alone wrote: one run folder, one row per epoch, nothing else in the cwd
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    assert len(_metrics(tmp_path / "two")) == 2
    info = json.loads((tmp_path / "two" / "config.json").read_text())
    one_image = 1.01 / info["dataset"]["sizes"]["val"]
    for r1, r2 in zip(_metrics(tmp_path / "one"), _metrics(tmp_path / "two")):
        assert r1["step"] == r2["step"]  # reduced over the ranks: the single run's numbers
        assert abs(float(r1["train_loss"]) - float(r2["train_loss"])) < 1e-4
        assert abs(float(r1["val_acc"]) - float(r2["val_acc"])) <= one_image
    s = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (s["world_size"], s["backend"], s["effective_batch_size"],
            s["batch_size_per_process"], s["effective_lr"]) == (2, "gloo", 32, 16, 0.05)
    assert info["parallel"]["world_size"] == 2 and info["resume"].endswith("--nproc 2")
    # rank 0's refusal (a folder that holds a run) is one line, from one rank
    again = _cli([*common, "--nproc", "2", "--out", "two"], cwd=tmp_path)
    assert again.returncode == 2 and "two already holds a run" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr


def _wait_for_checkpoint(proc: subprocess.Popen, ckpt: Path, timeout: float = 300) -> None:
    t0 = time.monotonic()
    while not ckpt.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before a checkpoint: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("no checkpoint in time")
        time.sleep(0.02)


def test_killed_two_process_run_resumes_bitwise_equal(tmp_path):
    # 2 epochs of 22 steps (batch 16 = 2 x 8); a checkpoint every 5 steps; dropout draws
    # from each rank's own torch RNG, augmentation from each rank's generator
    common = [*TINY, "--epochs", "2", "--set", "data.limit=500", "--set",
              "data.batch_size=16", "--set", "train.checkpoint_every=5", "--set",
              "model.dropout=0.2", "--set", "data.augment='flip-crop'", "--nproc", "2"]
    ref = _cli([*common, "--out", "ref"], cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr

    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *common, "--out", "cut"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for_checkpoint(proc, tmp_path / "cut" / "checkpoints" / "last.pt")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, as a crash would
        proc.wait(timeout=60)
    assert not (tmp_path / "cut" / "summary.json").exists()
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert 0 < state["step"] < 44

    # the world size is part of the run: another one is refused in one line
    for bad in (["--nproc", "3"], []):
        r = _cli(["--resume", "cut", "--quiet", *bad], cwd=tmp_path)
        assert r.returncode == 2 and "trained on 2 process(es)" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1

    resumed = _cli(["--resume", "cut", "--nproc", "2", "--quiet"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(tmp_path / "ref") == _metrics(tmp_path / "cut")
