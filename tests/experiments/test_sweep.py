"""Sweeps: grid expansion, seeding, failure isolation, stuck detection, resume, locking."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from cnnlab.api import sweep
from cnnlab.errors import ConfigError
from cnnlab.experiments import list_presets, load_spec, spec_from_dict
from cnnlab.experiments.executor import SweepLockedError, sweep_lock

TINY = {
    "name": "tiny",
    "reps": 2,
    "seed": 10,
    "base": {
        "data": {"spec": "digits", "batch_size": 32, "limit": 160, "val_fraction": 0.1},
        "model": {"name": "vgg", "width": 4},
        "optim": {"lr": 3e-3},
        "train": {"epochs": 1, "device": "cpu"},
    },
    "grid": {"model": {"blocks": [1, 2]}, "model.layers": [1]},
}


def test_grid_expansion_and_seeding():
    spec = spec_from_dict({**TINY, "grid": {"model.blocks": [1, 2, 3], "optim.lr": [0.1, 0.01]}})
    cells = spec.cells()
    assert [c.key for c in cells][:2] == ["model.blocks=1,optim.lr=0.1",
                                          "model.blocks=1,optim.lr=0.01"]
    assert len(cells) == 6
    assert [spec.run_seed(cells[0], r) for r in range(2)] == [10, 11]  # paired across cells
    assert spec.run_seed(cells[1], 1) == 11
    cfg = spec.run_config(cells[5], 1)
    assert (cfg.model.args["blocks"], cfg.optim.lr, cfg.train.seed) == (3, 0.01, 11)
    per_run = spec_from_dict({**TINY, "seeds": "per-run"})
    seeds = {per_run.run_seed(c, r) for c in per_run.cells() for r in range(2)}
    assert len(seeds) == 4  # distinct per (cell, rep), reproducible
    assert seeds == {per_run.run_seed(c, r) for c in per_run.cells() for r in range(2)}


def test_variants_axis():
    spec = spec_from_dict({**TINY, "grid": {"variant": ["plain", "bn"]},
                           "variants": {"plain": {}, "bn": {"model.norm": "bn"}}})
    cfgs = [spec.run_config(c, 0) for c in spec.cells()]
    assert [c.model.args.get("norm") for c in cfgs] == [None, "bn"]


@pytest.mark.parametrize("table, message", [
    ({"grid": {"optim.lrr": [1]}}, "unknown config key 'optim.lrr'"),
    ({"grid": {"model.blocks": []}}, "non-empty list"),
    ({"reps": 0}, "reps must be >= 1"),
    ({"grid": {"variant": ["x"]}}, r"variant\(s\) \['x'\] have no"),
    ({"colour": 1}, "unknown sweep key"),
])
def test_bad_specs(table, message):
    with pytest.raises(ConfigError, match=message):
        spec_from_dict({**TINY, **table})


def test_presets_listed_and_loadable():
    presets = list_presets()
    assert "seed-depth" in presets
    spec = load_spec("seed-depth")
    assert spec.reps == 3 and len(spec.cells()) == 15
    cfg = spec.base_config()
    assert (cfg.optim.name, cfg.optim.lr, cfg.data.batch_size, cfg.train.epochs) == \
        ("adam", 1e-3, 128, 3)
    with pytest.raises(ConfigError, match="did you mean seed-depth"):
        load_spec("seed-dept")


def test_sweep_runs_isolates_failures_and_reports(tmp_path):
    spec = {**TINY, "grid": {"optim.lr": [3e-3, 1e37]}, "reps": 1,
            "base": {**TINY["base"], "model": {"name": "vgg", "width": 4, "act": "tanh"},
                     "optim": {"name": "sgd"}}}
    res = sweep(spec, tmp_path / "s", workers=1, log=lambda *a: None)
    status = {r["cell"]: r["status"] for r in res.runs}
    assert status["optim.lr=1e+37"] == "diverged"
    assert status["optim.lr=0.003"] in ("ok", "stuck")
    assert res.failed == 1 and not res.ok
    assert (tmp_path / "s" / "report" / "table.md").exists()
    assert "line" in res.report  # one axis: a line plot instead of a heatmap


def test_stuck_runs_are_marked(tmp_path):
    # a learning rate of ~0 cannot move the network off chance
    spec = {**TINY, "grid": {"optim.lr": [1e-12]}, "reps": 1}
    res = sweep(spec, tmp_path / "s", workers=1, log=lambda *a: None)
    assert [r["status"] for r in res.runs] == ["stuck"]


def test_rerun_skips_finished_and_force_redoes(tmp_path):
    log = []
    first = sweep(TINY, tmp_path / "s", workers=2, report=False, log=log.append)
    assert first.ran == 4 and len(first.runs) == 4
    second = sweep(TINY, tmp_path / "s", workers=2, report=False, log=log.append)
    assert second.ran == 0 and second.skipped == 4
    assert [r["finished_at"] for r in second.runs] == [r["finished_at"] for r in first.runs]
    third = sweep(TINY, tmp_path / "s", workers=2, report=False, force=True, log=log.append)
    assert third.ran == 4


def test_second_invocation_is_refused(tmp_path):
    with sweep_lock(tmp_path / "s"):
        with pytest.raises(SweepLockedError, match=r"in use by another cnnlab process \(pid"):
            sweep(TINY, tmp_path / "s", log=lambda *a: None)


DRIVER = textwrap.dedent("""
    import sys
    from cnnlab.api import sweep
    if __name__ == "__main__":  # workers are spawned: they re-import this file
        sweep({spec!r}, sys.argv[1], workers=1, report=False)
""")


def _rows(folder):
    con = sqlite3.connect(folder / "results.sqlite")
    rows = con.execute("select cell, rep, seed, status, test_acc from runs order by cell, rep")
    out = rows.fetchall()
    con.close()
    return out


def test_driver_sigkill_then_rerun_matches_uninterrupted(tmp_path):
    spec = {**TINY, "base": {**TINY["base"], "train": {"epochs": 2, "device": "cpu",
                                                       "checkpoint_every": 2}}}
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(spec=spec))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = subprocess.run([sys.executable, str(script), str(tmp_path / "ref")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "cut")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # kill the driver as soon as the first run is stored (others still to do)
    for line in proc.stdout:
        if line.startswith("[1/4]"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(0.5)  # let the worker notice its parent died (PDEATHSIG)
    assert 1 <= len(_rows(tmp_path / "cut")) < 4
    again = subprocess.run([sys.executable, str(script), str(tmp_path / "cut")], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stdout
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "ref")  # no duplicate, none lost


def test_cli_sweep_list_and_report(tmp_path, capsys):
    from cnnlab.cli import main

    assert main(["sweep", "--list"]) == 0
    assert "seed-depth" in capsys.readouterr().out
    assert main(["sweep", "no-such-preset"]) == 2
    assert "unknown sweep preset" in capsys.readouterr().err


def test_failed_runs_are_retried_but_diverged_kept(tmp_path):
    from cnnlab.experiments.store import ResultsStore

    spec = {**TINY, "reps": 1, "grid": {"model.blocks": [1]}}
    first = sweep(spec, tmp_path / "s", workers=1, report=False, log=lambda *a: None)
    row = dict(first.runs[0], status="failed", error="worker process died")
    with ResultsStore(tmp_path / "s" / "results.sqlite") as store:
        store.record_run(row, [])
    again = sweep(spec, tmp_path / "s", workers=1, report=False, log=lambda *a: None)
    assert again.ran == 1 and again.runs[0]["status"] in ("ok", "stuck")
    row = dict(again.runs[0], status="diverged")
    with ResultsStore(tmp_path / "s" / "results.sqlite") as store:
        store.record_run(row, [])
    third = sweep(spec, tmp_path / "s", workers=1, report=False, log=lambda *a: None)
    assert third.ran == 0 and third.runs[0]["status"] == "diverged"
