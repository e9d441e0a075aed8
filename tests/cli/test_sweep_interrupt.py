"""Ctrl-C during a sweep: exit 130, one line with the command that resumes, and that
command finishes the sweep with the rows of an uninterrupted one."""

import shlex
import signal
import sqlite3
import subprocess
import sys
import time

SPEC = """
name = "ctrl-c"
reps = 1
[base.data]
spec = "digits"
limit = 160
[base.model]
name = "vgg"
width = 4
[base.train]
epochs = 2
device = "cpu"
[grid]
"model.blocks" = [1, 2, 3]
"""


def _rows(folder):
    with sqlite3.connect(folder / "results.sqlite") as db:
        return sorted(db.execute("SELECT cell, rep, status, test_acc FROM runs").fetchall())


def test_ctrl_c_prints_the_command_that_resumes(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "cnnlab", "sweep", str(spec), "--out", str(out),
           "--workers", "1", "--no-report"]
    # SIGINT's default action in the child even where this runs as a background job
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t0 = time.monotonic()
        while not list(out.glob("runs/*/*/checkpoints/last.pt")):  # the first run is training
            assert proc.poll() is None and time.monotonic() - t0 < 120, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    prefix = "cnnlab: interrupted; finished runs are kept; resume with: "
    assert lines[0].startswith(prefix)
    again = shlex.split(lines[0][len(prefix):])
    assert again[:2] == ["cnnlab", "sweep"] and str(out) in again
    done = subprocess.run([sys.executable, "-m", "cnnlab", *again[1:]], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, "-m", "cnnlab", "sweep", str(spec), "--out", str(ref),
                    "--workers", "1", "--no-report"], check=True, capture_output=True,
                   timeout=600)
    assert _rows(out) == _rows(ref) and len(_rows(out)) == 3
