"""Sweeps with stacked repetitions: the same rows, curves and run folders as separate runs."""

import json

import pytest

from cnnlab.api import sweep
from cnnlab.errors import ConfigError
from cnnlab.experiments import spec_from_dict
from cnnlab.experiments.executor import Task
from cnnlab.experiments.stacked import group_tasks, stacking_on

TINY = {
    "name": "tiny",
    "reps": 2,
    "seed": 10,
    "base": {
        "data": {"spec": "digits", "batch_size": 32, "limit": 160, "val_fraction": 0.1},
        "model": {"name": "vgg", "width": 4, "norm": "bn"},
        "optim": {"lr": 3e-3},
        "train": {"epochs": 2, "device": "cpu", "precision": "fp32", "channels_last": "false"},
    },
    "grid": {"model.blocks": [1, 2]},
}
SAME = ("cell", "rep", "seed", "status", "steps", "epochs_completed", "best_epoch", "params",
        "flops", "num_classes", "run_dir")
CLOSE = ("final_train_loss", "final_val_loss", "test_loss")


def _rows(folder, stack):
    spec = spec_from_dict(TINY)
    result = sweep(spec, folder, workers=1, report=False, log=lambda *a: None,
                   stack_reps=stack)
    return sorted(result.runs, key=lambda r: (r["cell"], r["rep"]))


def test_stacked_sweep_rows_match_separate(tmp_path):
    off = _rows(tmp_path / "x", "off")
    on = _rows(tmp_path / "x2", "on")
    assert len(on) == len(off) == 4
    for a, b in zip(off, on):
        for k in SAME:
            va, vb = a[k], b[k]
            if k == "run_dir":
                va, vb = va.split("/x/")[1], vb.split("/x2/")[1]
            assert va == vb, k
        for k in CLOSE:
            assert a[k] == pytest.approx(b[k], rel=1e-4), k
        for k in ("final_train_acc", "final_val_acc", "test_acc"):
            assert a[k] == pytest.approx(b[k], abs=1e-9), k
        summary = json.loads((tmp_path / "x2" / b["run_dir"].split("/x2/")[1] /
                              "summary.json").read_text())
        assert summary["stacked_reps"] == 2


def test_group_tasks_and_auto(tmp_path):
    spec = spec_from_dict(TINY)
    tasks = [Task("tiny", c, r, spec.run_seed(c, r), spec.run_config(c, r),
                  str(tmp_path / str(r))) for c in spec.cells() for r in range(2)]
    jobs, note = group_tasks(tasks, "on")
    assert [len(j) for j in jobs] == [2, 2] and "2 cell(s)" in note
    assert group_tasks(tasks, "off")[0] == tasks
    assert group_tasks(tasks, "auto")[0] == tasks  # on a CPU stacking measured slower
    assert group_tasks(tasks[:1] + tasks[2:3], "on")[0] == [tasks[0], tasks[2]]  # 1 rep left
    penalized = spec.run_config(spec.cells()[0], 0).set(**{"optim.l2": 1e-3})
    assert not stacking_on(penalized, "on")  # a per-step penalty: not stackable
    with pytest.raises(ConfigError, match="stack_reps must be one of auto, on, off"):
        stacking_on(tasks[0].config, "yes")


def test_unstackable_cell_runs_separately(tmp_path):
    """A model with dropout is refused by the stacked trainer: its repetitions run one by
    one, with the rows of a plain sweep."""
    table = {**TINY, "base": {**TINY["base"], "model": {"name": "vgg", "width": 4, "blocks": 1,
                                                        "dropout": 0.2}},
             "grid": {"optim.lr": [3e-3]}}
    result = sweep(spec_from_dict(table), tmp_path / "d", workers=1, report=False,
                   log=lambda *a: None, stack_reps="on")
    assert len(result.runs) == 2 and all(r["status"] != "failed" for r in result.runs)
    for r in result.runs:
        summary = json.loads((tmp_path / "d" / r["run_dir"].split("/d/")[1] /
                              "summary.json").read_text())
        assert "stacked_reps" not in summary
