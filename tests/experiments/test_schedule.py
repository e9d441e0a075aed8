"""Cost-aware scheduling: runs start largest estimated cost first; every row is still stored."""

from concurrent.futures import Future

import cnnlab
from cnnlab.experiments import executor, spec_from_dict
from cnnlab.experiments.executor import Task, order_by_cost, run_sweep
from cnnlab.models.registry import count_flops

# quick-depth in miniature: digits (8x8), VGG blocks 1-3 x layers 1-2, width 4
SPEC = {
    "name": "sched",
    "reps": 2,
    "seed": 0,
    "base": {
        "data": {"spec": "digits", "batch_size": 64, "limit": 128, "val_fraction": 0.1},
        "model": {"name": "vgg", "width": 4, "norm": "none"},
        "train": {"epochs": 1, "device": "cpu"},
    },
    "grid": {"model.blocks": [1, 2, 3], "model.layers": [1, 2]},
}


class SerialPool:
    """A stand-in for ProcessPoolExecutor: runs each task in this process when submitted
    and records the submission order."""

    submitted: list[Task] = []

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, task):
        SerialPool.submitted.append(task)
        fut = Future()
        fut.set_result(fn(task))
        return fut


def test_runs_submitted_by_decreasing_cost_and_all_recorded(tmp_path, monkeypatch):
    SerialPool.submitted = []
    monkeypatch.setattr(executor, "ProcessPoolExecutor", SerialPool)
    lines = []
    spec = spec_from_dict(SPEC)
    result = run_sweep(spec, tmp_path, workers=2, threads=1, log=lines.append)

    order = SerialPool.submitted
    assert len(order) == 12
    costs = [t.cost for t in order]
    assert all(c is not None and c > 0 for c in costs)
    assert costs == sorted(costs, reverse=True)
    # the estimate ranks cells as an independent count on a real (CPU) model does
    ds = cnnlab.load_dataset("digits", val_fraction=0.1, test_fraction=0.2)
    h, _, c = ds.train.shape

    def cpu_flops(cell):
        args = spec.run_config(cell, 0).model.args
        return count_flops(cnnlab.create_model("vgg", num_classes=10, in_chans=c, **args), h, c)

    ranked = sorted(spec.cells(), key=cpu_flops, reverse=True)
    assert [t.cell.key for t in order[::2]] == [cell.key for cell in ranked]
    assert [t.rep for t in order] == [0, 1] * 6  # repetitions of a cell stay in rep order
    assert order[0].cell.key != spec.cells()[0].key  # not the grid order
    assert any("largest estimated cost first" in line for line in lines)
    # the store does not care about the order: one row per (cell, rep), all of them
    assert result.ran == 12 and result.skipped == 0
    assert sorted((r["cell"], r["rep"]) for r in result.runs) == \
        sorted((cell.key, rep) for cell in spec.cells() for rep in range(2))


def test_unknown_costs_go_first_in_grid_order():
    spec = spec_from_dict(SPEC)
    cells = spec.cells()
    costs = [5.0, None, 9.0, 5.0, None, 1.0]
    tasks = [Task("s", cell, 0, 0, spec.run_config(cell, 0), "x", cost)
             for cell, cost in zip(cells, costs)]
    ordered = order_by_cost(tasks)
    assert [t.cost for t in ordered] == [None, None, 9.0, 5.0, 5.0, 1.0]
    assert [t.cell.key for t in ordered[:2]] == [cells[1].key, cells[4].key]
    assert [t.cell.key for t in ordered[3:5]] == [cells[0].key, cells[3].key]  # ties: grid order
