"""Issue 11, single runs: nothing a user does with `cnnlab train` ends in a traceback, and
nothing already written is lost (one line on stderr, a non-zero exit, files intact)."""

import contextlib
import errno
import fcntl
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

SMALL = ["--set", "data.limit=160", "--set", "model.width=4", "--set", "model.blocks=2",
         "--quiet"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def train(out, *args, epochs=1):
    return main(["train", "vgg", "--data", "digits", "--epochs", str(epochs), "--out", str(out),
                 *SMALL, *args])


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, *options: str):
    """A small tmpfs at ``folder`` (root only); skips the test where it cannot be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    opts = ",".join(("size=4m", *options))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no mount permission in this container)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# ------------------------------------------------------------- 1. keys from the dataset
@pytest.mark.parametrize("key, value, message", [
    ("model.num_classes", 5, "model.num_classes = 5 but dataset 'digits' has 10 classes; "
                             "model.num_classes comes from the data"),
    ("model.in_chans", 3, "model.in_chans = 3 but dataset 'digits' has 1-channel images; "
                          "model.in_chans comes from the data"),
])
def test_dataset_keys_refused_in_one_line(tmp_path, capsys, key, value, message):
    out = tmp_path / "r"
    assert train(out, "--set", f"{key}={value}") == 2
    assert message in one_line(capsys.readouterr().err)
    assert not out.exists()


def test_dataset_keys_equal_to_the_data_are_accepted(tmp_path, capsys):
    assert train(tmp_path / "r", "--set", "model.num_classes=10", "--set", "model.in_chans=1") == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["epochs_completed"] == 1


# --------------------------------------------------------------------- 2. a full disk
def test_full_disk_mid_run_is_one_line_and_resumes(tmp_path, capsys):
    """A real full disk: a 4 MB tmpfs filled after the first epoch."""
    with mounted_tmpfs(tmp_path / "disk") as disk:
        out = disk / "run"
        assert train(out) == 0
        capsys.readouterr()
        before = snapshot(out)
        filler = disk / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 2
        line = one_line(capsys.readouterr().err)
        assert "No space left on device" in line and str(out) in line
        assert f"kept {out / 'checkpoints' / 'last.pt'} (epoch 1" in line
        assert f"cnnlab train --resume {out}" in line
        assert snapshot(out) == before  # nothing written is lost or half-written
        assert not [p for p in out.rglob(".*.tmp")]
        filler.unlink()
        assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
        assert len((out / "metrics.csv").read_text().strip().splitlines()) == 3


def test_full_disk_at_a_checkpoint_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    """ENOSPC simulated at the second epoch's checkpoint (works without root)."""
    import cnnlab.train.checkpoint as ckpt

    out = tmp_path / "run"
    real = ckpt.write_temp

    def full_after_epoch_1(path, write):
        if (out / "metrics.csv").exists() and \
                len((out / "metrics.csv").read_text().splitlines()) >= 2:  # header, epoch 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, write)

    monkeypatch.setattr(ckpt, "write_temp", full_after_epoch_1)
    assert train(out, epochs=3) == 2
    line = one_line(capsys.readouterr().err)
    assert "No space left on device" in line and "(epoch 1, step " in line
    assert f"resume with: cnnlab train --resume {out}" in line
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(ckpt, "write_temp", real)  # space freed
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs_completed"] == 3


def test_full_disk_before_the_first_step_leaves_no_stub(tmp_path, capsys, monkeypatch):
    import cnnlab.train.run as run

    def full(path, obj):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(run, "atomic_write_json", full)
    out = tmp_path / "new" / "run"
    assert train(out) == 2
    line = one_line(capsys.readouterr().err)
    assert f"cannot write {out / 'config.json'}: No space left on device" in line
    assert "nothing was kept" in line
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------- 3. an empty last.pt
def test_empty_last_checkpoint_falls_back_with_a_warning(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, epochs=2) == 0
    ckpts = out / "checkpoints"
    good_prev = (ckpts / "last.prev.pt").read_bytes()
    (ckpts / "last.pt").write_bytes(b"")
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0  # redoes epoch 2
    err = capsys.readouterr().err
    line = one_line(err)
    assert line.startswith("cnnlab: warning:") and "empty file (0 bytes)" in line
    assert "resuming from" in line and "last.prev.pt" in line
    # the empty file never became the previous copy: the good one from before stays
    assert (ckpts / "last.prev.pt").read_bytes() == good_prev
    assert torch.load(ckpts / "last.pt", weights_only=True)["epoch"] == 2
    assert torch.load(ckpts / "last.prev.pt", weights_only=True)["epoch"] == 1


# --------------------------------------------------------- 4. an exploding finite loss
def test_exploding_finite_loss_is_diverged(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["train", "vgg", "--data", "digits", "--epochs", "2", "--out", str(out),
                 "--set", "model.norm=bn", "--set", "optim.name=sgd", "--set", "optim.lr=1e6",
                 *SMALL])
    captured = capsys.readouterr()
    assert code == 3
    line = one_line(captured.err)
    assert "training loss exploded to" in line and "diverged" in line and "optim.lr" in line
    assert captured.out.startswith("diverged:")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["final_train_loss"] > 1e3


# ------------------------------------------------------------- 5. a run at chance: stuck
def test_run_at_chance_is_stuck(tmp_path, capsys):
    out = tmp_path / "r"
    assert train(out, "--set", "optim.lr=1e-9") == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stuck" and summary["trainer_status"] == "ok"
    assert text.startswith("stuck: test acc")


# --------------------------------------------------------- 7. Ctrl-C, 2 runs at once
def _start_long_run(out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", "vgg", "--data", "digits", "--epochs", "200",
         "--out", str(out), "--set", "data.limit=320", "--set", "model.width=4",
         "--set", "model.blocks=2", "--set", "train.threads=1", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """Ctrl-C's default action in the child: a shell runs background jobs (a CI script
    started with `&`) with SIGINT ignored, and the child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{path} never appeared: {proc.communicate()}")
        time.sleep(0.05)


def test_ctrl_c_prints_the_resume_command_and_a_second_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    proc = _start_long_run(out)
    try:
        _wait_for(out / "config.json", proc)
        # a second run into the same folder while the first holds it: refused, one line
        assert train(out) == 2
        line = one_line(capsys.readouterr().err)
        assert "is in use by another cnnlab process" in line or "already holds a run" in line
        _wait_for(out / "checkpoints" / "last.pt", proc)
        before = {k: v for k, v in snapshot(out).items() if k in ("config.json", "run.toml")}
        assert train(out) == 2
        assert one_line(capsys.readouterr().err)
        assert {k: v for k, v in snapshot(out).items() if k in before} == before
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    line = one_line(err)
    assert line.startswith("cnnlab: interrupted; kept ") and \
        line.endswith(f"resume with: cnnlab train --resume {out}")
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"] >= 1


def test_folder_in_use_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `cnnlab train` holds it
        assert train(out) == 2
        line = one_line(capsys.readouterr().err)
        assert f"run folder {out} is in use by another cnnlab process" in line
    finally:
        os.close(fd)
    assert list(out.iterdir()) == []


# ----------------------------------------------------- 8. refused runs leave no stub
def test_refused_run_leaves_no_stub_folder(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    assert train(out, "--set", "data.batch_size=1000", "--set", "data.drop_last=true") == 2
    assert "larger than the" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "a").exists()
    # a folder that existed before is kept, and so is what it held
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    assert train(out, "--set", "data.batch_size=1000", "--set", "data.drop_last=true") == 2
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------ 9. the user's umask
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert train(tmp_path / "r") == 0
    finally:
        os.umask(old)
    out = tmp_path / "r"
    for name in ("config.json", "run.toml", "summary.json", "metrics.csv",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).stat().st_mode & 0o777 == mode, name


# --------------------------------------------------------------- a read-only --out
@pytest.mark.parametrize("how", ["chmod", "read-only mount"])
def test_read_only_out_folder_is_one_line(tmp_path, capsys, how):
    parent = tmp_path / "ro"
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes through chmod 0555; the read-only mount case covers it")
        parent.mkdir()
        parent.chmod(0o555)
        ctx = contextlib.nullcontext(parent)
    else:
        ctx = mounted_tmpfs(parent, "ro")
    try:
        with ctx:
            assert train(parent / "run") == 2
            line = one_line(capsys.readouterr().err)
            assert f"cannot create run folder {parent / 'run'}:" in line
            assert ("Read-only file system" in line) or ("Permission denied" in line)
    finally:
        with contextlib.suppress(OSError):
            parent.chmod(0o755)
