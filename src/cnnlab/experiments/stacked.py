"""A sweep cell's repetitions as one stacked job (:mod:`cnnlab.train.stacked`).

The repetitions of a cell differ only in ``train.seed``; on a device that small runs leave
mostly idle they can train as one vmapped model, each keeping its own initialization, data
order, augmentation and optimizer state, and each writing its own run folder and results
row exactly as a separate run would.  ``stack_reps`` (``cnnlab sweep --stack-reps``):

- ``off``: every repetition a separate run;
- ``on``: stack every cell whose repetitions can be stacked exactly (no dropout or other
  random layers, no per-step penalty, not fp16, not compiled); the others run separately;
- ``auto`` (default): ``on`` only on device types where a measurement
  (``python benchmarks/stacked.py --device ...``) showed a stacked cell faster than its
  repetitions one by one: :data:`STACKING_PAYS`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from cnnlab.config import RunConfig
from cnnlab.errors import ConfigError
from cnnlab.experiments.executor import Task, failed_outcome, run_task, task_outcome
from cnnlab.experiments.run import build_model
from cnnlab.train.checkpoint import seed_everything
from cnnlab.train.hardware import resolve_device
from cnnlab.train.run import prepare_data
from cnnlab.train.stacked import StackingRefused, config_problem, fit_stacked
from cnnlab.train.trainer import RunResult

STACK_CHOICES = ("auto", "on", "off")
# Device type -> whether a stacked cell measured faster than its repetitions one by one
# (benchmarks/stacked.py). cpu: slower (issue 13: grouped convolutions 0.60-0.78x for cells
# 1x1 to 5x3; benchmarks/stacked.py on a shared 2-core CPU, 1 thread, vgg 2x1 width 16,
# 3 reps, digits: 0.60x in fp32, 0.26x under bf16 autocast). cuda: not measured yet, so
# off until a measurement says otherwise.
STACKING_PAYS: dict[str, bool] = {"cpu": False}


def stacking_on(cfg: RunConfig, setting: str) -> bool:
    """Whether ``stack_reps = setting`` stacks the repetitions of a cell with config ``cfg``
    (before the exactness checks a stacked job makes itself)."""
    if setting not in STACK_CHOICES:
        raise ConfigError(f"stack_reps must be one of {', '.join(STACK_CHOICES)}, "
                          f"got {setting!r}")
    if setting == "off" or config_problem([cfg]):
        return False
    if setting == "on":
        return True
    return STACKING_PAYS.get(resolve_device(cfg.train.device).type, False)


def group_tasks(tasks: list[Task], setting: str = "auto") -> tuple[list, str]:
    """The jobs to run: each cell's pending repetitions as one list where ``setting``
    stacks them, else single tasks (grid order kept); and a note for the sweep's log."""
    by_cell: dict[str, list[Task]] = {}
    for t in tasks:
        by_cell.setdefault(t.cell.key, []).append(t)
    jobs, stacked = [], 0
    for group in by_cell.values():
        if len(group) > 1 and stacking_on(group[0].config, setting):
            jobs.append(group)
            stacked += 1
        else:
            jobs.extend(group)
    note = f"; {stacked} cell(s) with stacked repetitions" if stacked else ""
    return jobs, note


def train_stacked(configs: list[RunConfig], run_dirs: list[str | Path] | None = None,
                  resume: bool | str = False, exact: bool = True) -> list[RunResult]:
    """:func:`~cnnlab.experiments.run.train_run` for repetitions of one config as one stacked
    job: each model built after seeding with its own ``train.seed``, as a separate run does."""
    if configs[0].train.threads:
        torch.set_num_threads(configs[0].train.threads)
    ds = prepare_data(configs[0])
    models = []
    for cfg in configs:
        seed_everything(cfg.train.seed)
        models.append(build_model(cfg, ds))
    return fit_stacked(models, ds, configs, out_dirs=run_dirs, resume=resume, exact=exact)


def run_stacked_tasks(tasks: list[Task]) -> list[dict]:
    """Worker: the repetitions of one cell stacked; one ``{"row", "curves"}`` per task,
    as :func:`~cnnlab.experiments.executor.run_task` gives. Repetitions that cannot be
    stacked (refused before anything is written) run one by one instead. Never raises."""
    start = time.perf_counter()
    try:
        results = train_stacked([t.config for t in tasks], [t.run_dir for t in tasks],
                                resume="auto")
    except StackingRefused:
        return [run_task(t) for t in tasks]
    except BaseException as e:  # noqa: BLE001 - a crashing cell is a result
        if isinstance(e, KeyboardInterrupt):
            raise
        return [failed_outcome(t, e, time.perf_counter() - start) for t in tasks]
    return [task_outcome(t, r) for t, r in zip(tasks, results)]


__all__ = ["STACKING_PAYS", "STACK_CHOICES", "group_tasks", "run_stacked_tasks",
           "stacking_on", "train_stacked"]
