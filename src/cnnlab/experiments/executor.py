"""Run a sweep: cells x repetitions in worker processes, results into the SQLite store.

The driver owns the store (the only writer) and a lock on the sweep folder; workers train
and return summaries.  Finished runs are skipped on the next invocation, a half-finished
run resumes from its checkpoint, and one failing cell never stops the others.  The report
is not written here: whoever runs the sweep asks for it (:func:`cnnlab.sweep`, the CLI).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import fcntl
import json
import math
import os
import shutil
import sys
import time
import traceback
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from cnnlab.config import RunConfig
from cnnlab.errors import CnnlabError, ConfigError, ModelError, one_line_warning
from cnnlab.experiments.spec import Cell, SweepSpec
from cnnlab.experiments.store import CURVE_COLUMNS, STORE_FILENAME, ResultsStore
from cnnlab.status import FAILED, is_failure, stored_status


class SweepLockedError(CnnlabError):
    """Another process is running a sweep in the same folder."""


@contextlib.contextmanager
def sweep_lock(folder: Path):
    """An exclusive lock on ``folder/.lock`` (released by the OS even on SIGKILL)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise SweepLockedError(
                f"sweep folder {folder} is in use by another cnnlab process (pid {other}); "
                "wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


@dataclass
class Packing:
    workers: int
    threads: int
    reason: str = ""


def physical_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def choose_packing(cfg: RunConfig, tasks: int, workers: int | None = None,
                   threads: int | None = None) -> Packing:
    """Default packing: on a GPU one worker; on a CPU one single-threaded worker per core.

    Measured on a 2-core laptop-class CPU (benchmarks/packing.py): two 1-thread runs at once
    finish a grid of small VGG-like models faster than one 2-thread run at a time, because
    small convolutions scale poorly across threads.
    """
    from cnnlab.train.hardware import resolve_device

    cores = physical_cores()
    device = resolve_device(cfg.train.device)
    if device.type != "cpu":
        w, t = workers or 1, threads or 1
        return Packing(w, t, f"{w} worker(s) sharing {device}")
    w = workers or max(1, min(cores, tasks))
    t = threads or max(1, cores // w)
    return Packing(w, t, f"{w} worker(s) x {t} thread(s) on {cores} CPU core(s)")


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the driver dies, so no orphan keeps training."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _init_worker(threads: int) -> None:
    _die_with_parent()
    warnings.showwarning = one_line_warning  # a run's warnings read like the driver's
    import torch

    torch.set_num_threads(threads)


@dataclass
class Task:
    sweep: str
    cell: Cell
    rep: int
    seed: int
    config: RunConfig
    run_dir: str
    cost: float | None = None  # estimated FLOPs of the whole run (run_cost); None: unknown

    def row(self, **fields) -> dict:
        """A results-store row for this task: its key and identity plus ``fields``."""
        return {"sweep": self.sweep, "cell": self.cell.key, "cell_params": self.cell.params,
                "rep": self.rep, "seed": self.seed, "run_dir": self.run_dir, **fields}


def run_task(task: Task) -> dict:
    """Worker: train one (cell, rep); never raises, returns the row and curves."""
    start = time.perf_counter()
    try:
        from cnnlab.experiments.run import train_run

        result = train_run(task.config, task.run_dir, resume="auto", progress=False)
        return task_outcome(task, result)
    except BaseException as e:  # noqa: BLE001 - a crashing cell is a result, not a sweep crash
        if isinstance(e, KeyboardInterrupt):
            raise
        return failed_outcome(task, e, time.perf_counter() - start)


def run_job(job: Task | list[Task]) -> list[dict]:
    """Worker: one task, or the repetitions of a cell stacked (:mod:`.stacked`); a list of
    ``{"row", "curves"}``, one per task; never raises."""
    if isinstance(job, list):
        from cnnlab.experiments.stacked import run_stacked_tasks

        return run_stacked_tasks(job)
    return [run_task(job)]


def job_tasks(job: Task | list[Task]) -> list[Task]:
    return job if isinstance(job, list) else [job]


def task_outcome(task: Task, result) -> dict:
    """The results-store row and curves of a finished run (a RunResult) of ``task``."""
    row = task.row()
    s = result.summary
    info = _run_info(task.run_dir)
    num_classes = info.get("num_classes")
    flops = _flops(result.model, info)
    final = s["test_acc"] if s["test_acc"] is not None else s["final_val_acc"]
    status = stored_status(s["status"], final, num_classes)
    row.update({k: s.get(k) for k in (
        "final_train_acc", "final_train_loss", "final_val_acc", "final_val_loss",
        "test_acc", "test_loss", "best_val_acc", "best_epoch", "params", "wall_time",
        "images_per_s", "steps", "epochs_completed", "steps_to_target")})
    row.update(status=status, error=result.message or None, flops=flops,
               num_classes=num_classes)
    curves = [{k: h.get(k) for k in CURVE_COLUMNS} for h in result.history]
    row["finished_at"] = _dt.datetime.now().isoformat(timespec="seconds")
    return {"row": row, "curves": curves}


def failed_outcome(task: Task, e: BaseException, wall: float) -> dict:
    """The row of a run that raised ``e`` (status failed, its first line as the error)."""
    row = task.row()
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if not isinstance(e, CnnlabError):
        msg = f"{type(e).__name__}: {msg}\n{traceback.format_exc(limit=4)}"
    row.update(status=FAILED, error=msg, wall_time=wall)
    row["finished_at"] = _dt.datetime.now().isoformat(timespec="seconds")
    return {"row": row, "curves": []}


def _run_info(run_dir: str) -> dict:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads((Path(run_dir) / "config.json").read_text())["dataset"]
    return {}


def _flops(model, info: dict) -> int | None:
    """FLOPs of one forward pass at the run's image size (informative: never fails a run)."""
    from cnnlab.models.registry import count_flops

    try:
        h, _, c = info["image_shape"]
        return count_flops(model.float().cpu(), h, c)
    except Exception:  # noqa: BLE001
        return None


@dataclass
class SweepResult:
    name: str
    folder: Path
    runs: list[dict]
    ran: int
    skipped: int
    failed: int  # runs of the whole sweep whose status is_failure (failed, diverged)
    packing: Packing | None = None
    report: dict = field(default_factory=dict)  # written by the caller (cnnlab.sweep)
    table: str = ""
    verdict: str = ""  # the report's phenomenon verdict, when the spec names an analysis
    wall_time: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0


def _slug(cell: Cell) -> str:
    parts = [f"{k.split('.')[-1]}{v}" for k, v in cell.params.items()]
    return "_".join(parts).replace("/", "-") or "base"


def _cell_error(e: Exception, where: str) -> CnnlabError:
    """``e`` as the same kind of user error, its message prefixed by ``where``."""
    msg = f"{where}: {str(e).strip() or type(e).__name__}"
    try:
        return type(e)(msg)
    except Exception:  # noqa: BLE001 - an error class with another signature
        return ModelError(msg)


def run_cost(flops_per_image: int, cfg: RunConfig, ds) -> float:
    """Estimated FLOPs of one run of ``cfg`` on the prepared dataset ``ds``.

    Training: forward + backward ~ 3 forward passes per image (the backward pass computes
    gradients of both the activations and the weights), over the training images every
    epoch; evaluation: one forward pass over the validation split every epoch and over the
    test split once.  Early stopping is not foreseen: this is the cost of the full run.
    """
    n_val = len(ds.val) if ds.val is not None else 0
    n_test = len(ds.test) if ds.test is not None else 0
    return protocol_cost(flops_per_image, cfg.train.epochs, (len(ds.train), n_val, n_test))


def protocol_cost(flops_per_image: float, epochs: int, split: tuple[int, int, int]) -> float:
    """:func:`run_cost` from the split's sizes (train, validation, test) alone."""
    n_train, n_val, n_test = split
    return float(flops_per_image) * (epochs * (3 * n_train + n_val) + n_test)


def order_by_cost(tasks: list[Task]) -> list[Task]:
    """The tasks in longest-processing-time order: largest estimated cost first, so that
    the last runs to start are the short ones and no worker idles long at the end.

    Tasks whose cost is unknown (``cost`` None: no estimate, e.g. a model op without a meta
    kernel) go first, in grid order: one of them may be the longest run, and started last
    it would run alone.  Ties keep grid order (a stable sort), so a cell's repetitions stay
    in rep order.
    """
    unknown = [t for t in tasks if t.cost is None]
    known = sorted((t for t in tasks if t.cost is not None), key=lambda t: -t.cost)
    return unknown + known


def check_sweep(spec: SweepSpec, devices: bool = True) -> dict[str, float | None]:
    """Refuse a sweep that cannot run before anything starts or is written: every cell's
    device must exist, its data load and its augmentation build, and its model build (on the
    meta device: no memory, no time) and take the data's input size.

    Raises the first problem as one :class:`~cnnlab.errors.CnnlabError` naming the cell.
    Cells are checked grouped by their data config, so each distinct dataset is loaded
    once and only one is held in memory at a time.

    ``devices=False`` leaves the device to the machine a run lands on (a Ray driver may
    have no GPU while its workers do): a missing one is then that run's failed row.

    Returns each cell's estimated cost in FLOPs (:func:`run_cost`, from the forward FLOPs
    per image counted on the meta model), keyed by cell key; None where it cannot be counted.
    """
    import torch

    from cnnlab.data.augment import build_pipeline
    from cnnlab.experiments.run import build_model
    from cnnlab.train.hardware import resolve_device
    from cnnlab.train.run import prepare_data

    cells = spec.cells()
    many = len(cells) > 1
    sweep_where = f"sweep '{spec.name}'"
    data_axes = [a for a in spec.axes if a.startswith("data.") or a == "variant"]
    by_data: dict[str, list] = {}  # repr(cfg.data) -> [(where, key, cfg), ...]
    costs: dict[str, float | None] = {}
    seen_devices: set[str] = set()
    for cell in cells:
        where = f"{sweep_where}, cell {cell.key}" if many else sweep_where
        try:
            cfg = spec.run_config(cell, 0)  # a bad value in the middle of an axis
        except CnnlabError as e:
            raise _cell_error(e, where) from None
        if devices and cfg.train.device not in seen_devices:
            try:
                resolve_device(cfg.train.device)
            except CnnlabError as e:
                raise _cell_error(e, where if "train.device" in spec.axes
                                  else sweep_where) from None
            seen_devices.add(cfg.train.device)
        by_data.setdefault(repr(cfg.data), []).append((where, cell.key, cfg))
    for group in by_data.values():
        where, _, cfg = group[0]
        try:
            ds = prepare_data(cfg)
            build_pipeline(cfg.data.augment, ds.num_classes, image_size=ds.train.shape[0])
        except CnnlabError as e:
            raise _cell_error(e, where if data_axes else sweep_where) from None
        h, w, c = ds.train.shape
        flops: dict[str, int | None] = {}  # repr(cfg.model) -> forward FLOPs per image
        for where, key, cfg in group:
            if repr(cfg.model) in flops:
                f = flops[repr(cfg.model)]
                costs[key] = None if f is None else run_cost(f, cfg, ds)
                continue
            f = None
            try:
                with torch.device("meta"):
                    model = build_model(cfg, ds)
                    model.eval()
                    with torch.no_grad():
                        model(torch.zeros(2, c, h, w))
                f = _meta_flops(model, h, c)
            except CnnlabError as e:
                raise _cell_error(e, where) from None
            except NotImplementedError:
                pass  # an op without a meta kernel: the run itself will tell
            except Exception as e:  # noqa: BLE001 - the forward pass rejects this input size
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ModelError(f"{where}: model '{cfg.model.name}' cannot take the data's "
                                 f"{h}x{w}x{c} input: {first}") from None
            flops[repr(cfg.model)] = f
            costs[key] = None if f is None else run_cost(f, cfg, ds)
    return costs


def _meta_flops(model, h: int, c: int) -> int | None:
    """Forward FLOPs per image of a meta-device model, or None when they cannot be counted."""
    from cnnlab.models.registry import count_flops

    try:
        return count_flops(model, h, c) or None
    except Exception:  # noqa: BLE001 - an estimate only: the run itself will tell
        return None


def run_sweep(spec: SweepSpec, folder: str | Path, *, workers: int | None = None,
              threads: int | None = None, force: bool = False, log=print,
              check: bool = True, stack_reps: str = "auto", backend: str | None = None,
              address: str | None = None, gpus_per_run: float | None = None) -> SweepResult:
    """Run every (cell, rep) not yet done in ``folder`` (failed runs are tried again).

    ``stack_reps`` (``auto``, ``on``, ``off``): train a cell's repetitions as one stacked
    job (:mod:`cnnlab.experiments.stacked`; the same rows and run folders); ``auto`` only on
    devices where a measurement showed it faster (:data:`~.stacked.STACKING_PAYS`).

    With ``check`` (default) the whole grid is checked first (:func:`check_sweep`): a bad
    data spec, model key, input size or device raises before the folder or its store is
    created and before any run starts.  The check also estimates each run's cost, and the
    runs start largest first (:func:`order_by_cost`); without the check they start in grid
    order.

    ``backend`` (default: the spec's, else ``local``): ``local`` runs in a process pool on
    this machine; ``ray`` hands each run to the Ray cluster at ``address`` as a task
    (:mod:`cnnlab.experiments.ray_backend`; ``gpus_per_run`` GPUs each, for GPU runs).
    Either way this driver alone writes the store, and a rerun skips finished runs.
    """
    backend = backend or spec.backend
    cluster = None
    if backend == "ray":
        from cnnlab.experiments.ray_backend import RayCluster

        # Ray missing, --workers given or a bad address: refused before any work
        cluster = RayCluster.prepare(address or spec.address, workers,
                                     spec.gpus_per_run if gpus_per_run is None
                                     else gpus_per_run)
        folder = Path(folder).absolute()  # every node writes the same path (shared storage)
    elif backend != "local":
        raise ConfigError(f"unknown sweep backend {backend!r}; use local or ray")
    elif address or gpus_per_run is not None:
        raise ConfigError("--address and --gpus-per-run are for the Ray backend: add "
                          "--backend ray")
    folder = Path(folder)
    t0 = time.perf_counter()
    # no check, no estimate: grid order; on Ray a run's device is the worker's to check
    costs = check_sweep(spec, devices=cluster is None) if check else {}
    if cluster is not None:
        # an unreachable cluster or one without the CPUs/GPUs a run asks for: one line,
        # the sweep folder not yet created
        cluster.connect([spec.run_config(c, 0) for c in spec.cells()], threads, log)
    # the cluster first: it disconnects even when the folder is locked by another sweep
    with cluster or contextlib.nullcontext(), sweep_lock(folder):
        store = ResultsStore(folder / STORE_FILENAME)
        try:
            if force:
                store.delete_sweep(spec.name)
                shutil.rmtree(folder / "runs", ignore_errors=True)
            store.set_sweep(spec.name, spec.to_dict(), spec.axes)
            done = store.finished(spec.name)  # kept; crashed ("failed") runs are retried
            tasks = []
            for cell in spec.cells():
                for rep in range(spec.reps):
                    if (cell.key, rep) in done:
                        continue
                    seed = spec.run_seed(cell, rep)
                    cfg = spec.run_config(cell, rep)
                    cfg = cfg.set(**{"train.quiet": True})
                    tasks.append(Task(spec.name, cell, rep, seed, cfg,
                                      str(folder / "runs" / _slug(cell) / f"rep{rep}"),
                                      costs.get(cell.key)))
            total = len(spec.cells()) * spec.reps
            skipped = total - len(tasks)
            packing = None
            if tasks:
                from cnnlab.experiments.stacked import group_tasks

                tasks = order_by_cost(tasks)  # rows are keyed by (cell, rep): order is free
                jobs, stack_note = group_tasks(tasks, stack_reps)  # a group at its first rep
                packing = (cluster.packing(tasks[0].config, threads) if cluster is not None
                           else choose_packing(tasks[0].config, len(jobs), workers, threads))
                log(f"sweep {spec.name}: {len(tasks)} run(s) to do, {skipped} already done; "
                    f"{packing.reason}{stack_note}")
                log(_order_line(tasks))
                record = _recorder(store, log, total, skipped)
                if cluster is not None:
                    cluster.execute(jobs, packing, record)
                else:
                    _execute(jobs, packing, record)
            else:
                log(f"sweep {spec.name}: all {total} runs already done (use --force to redo)")
            runs = store.runs(spec.name)
        finally:
            store.close()
    failed = sum(is_failure(r["status"]) for r in runs)
    return SweepResult(spec.name, folder, runs, len(tasks), skipped, failed, packing,
                       wall_time=time.perf_counter() - t0)


def _order_line(tasks: list[Task]) -> str:
    known = [t.cost for t in tasks if t.cost is not None]
    if not known:
        return "order: grid order (no cost estimates)"
    unknown = len(tasks) - len(known)
    rest = f"; {unknown} run(s) of unknown cost first" if unknown else ""
    return (f"order: largest estimated cost first ({_flop_text(sum(known))} in all, runs of "
            f"{_flop_text(min(known))} to {_flop_text(max(known))}{rest})")


def _flop_text(flops: float) -> str:
    """``1.4e15`` -> ``"1.4 PFLOP"``."""
    for div, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if flops >= div:
            return f"{flops / div:.3g} {prefix}FLOP"
    return f"{flops:.3g} FLOP"


def _recorder(store: ResultsStore, log, total: int, done_before: int):
    """``record(row, curves)``: store one finished run (the driver's only write) and log it
    as ``[finished/total]``; every backend records through it."""
    finished = done_before

    def record(row: dict, curves: list[dict]) -> None:
        nonlocal finished
        store.record_run(row, curves)
        finished += 1
        _log_row(log, row, finished, total)

    return record


def lost_outcomes(job: Task | list[Task], error: str) -> list[dict]:
    """The failed rows of a job whose result never came back (its worker died)."""
    return [{"row": t.row(status=FAILED, error=error), "curves": []} for t in job_tasks(job)]


def _execute(tasks: list[Task | list[Task]], packing: Packing, record) -> None:
    pending = list(reversed(tasks))  # pop() from the end keeps the given order
    ctx = get_context("spawn")  # CUDA-safe; workers import torch once and reuse the data
    while pending:
        with ProcessPoolExecutor(packing.workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(packing.threads,)) as pool:
            running = {}
            try:
                while pending or running:
                    while pending and len(running) < packing.workers:
                        job = pending.pop()
                        running[pool.submit(run_job, job)] = job
                    complete, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in complete:
                        try:
                            outs = fut.result()
                        except BrokenProcessPool:
                            raise  # the job stays in `running`: recorded below
                        except Exception as e:  # noqa: BLE001 - pickling or worker error
                            outs = lost_outcomes(running[fut], f"{type(e).__name__}: {e}")
                        del running[fut]
                        for out in outs:
                            record(out["row"], out["curves"])
            except BrokenProcessPool:
                # a worker died hard (e.g. out of memory): record the runs it held, go on
                for job in running.values():
                    for out in lost_outcomes(job, "worker process died (out of memory or "
                                             "killed)"):
                        record(out["row"], out["curves"])


def _log_row(log, row: dict, finished: int, total: int) -> None:
    acc = row.get("test_acc")
    acc = row.get("final_val_acc") if acc is None else acc
    acc_s = "" if acc is None or (isinstance(acc, float) and math.isnan(acc)) \
        else f" acc {100 * acc:.1f}%"
    wall = row.get("wall_time")
    wall_s = f" in {wall:.0f}s" if wall else ""
    # the whole first line: a message cut mid-word hides what to fix
    err = f" ({row['error'].strip().splitlines()[0]})" if str(row.get("error") or "").strip() \
        else ""
    log(f"[{finished}/{total}] {row['cell']} rep {row['rep']}: {row['status']}{acc_s}"
        f"{wall_s}{err}")
    sys.stdout.flush()
