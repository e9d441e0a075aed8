"""The Ray backend of a sweep: each run a Ray task on a cluster, results into the driver's store.

``cnnlab sweep SPEC --backend ray --address auto|HOST:PORT`` (or ``backend = "ray"`` in the
sweep file).  What stays as with the local process pool (:mod:`.executor`): the same jobs in
the same largest-first order, the same worker function (:func:`~.executor.run_job`), and this
driver as the only writer of the SQLite store, recording each row as its result comes back.
What Ray adds:

- each job is a task asking for ``num_cpus`` = threads per run and, for a GPU run,
  ``num_gpus`` = ``gpus_per_run`` (default 1; a fraction lets small runs share a GPU);
- a task lost with its worker process or node is retried (``max_retries``,
  :data:`MAX_RETRIES`).  The retry trains with ``resume="auto"`` like any run: where the
  sweep folder is on storage every node sees, it resumes from the lost attempt's checkpoint,
  else it starts the run afresh;
- a driver killed and rerun: Ray ends the dead driver's tasks, and the rerun skips the runs
  the store holds and resumes the others, exactly as the local executor does.

Every node needs the same cnnlab and Ray versions installed, and the paths a sweep names
(``--out``, ``folder:`` data) must mean the same file on every node: the sweep folder is
made absolute before any task is sent.
"""

from __future__ import annotations

import logging
import socket
import warnings
from dataclasses import dataclass
from types import ModuleType

from cnnlab.config import RunConfig
from cnnlab.errors import CnnlabError, ConfigError, one_line_warning
from cnnlab.experiments.executor import Packing, Task, job_tasks, lost_outcomes, run_job
from cnnlab.experiments.spec import check_gpus_per_run

MAX_RETRIES = 3  # attempts after the first for a task whose worker process or node died
CONNECT_TIMEOUT_S = 5.0  # the reachability check of a HOST:PORT address
INSTALL_HINT = 'pip install "cnnlab[ray]"'


class RayBackendError(CnnlabError):
    """Ray is not installed, or the cluster cannot be reached or cannot fit a run."""


def run_on_worker(job: Task | list[Task], threads: int) -> list[dict]:
    """Ray task: the local pool's worker set-up (:func:`~.executor._init_worker`), then the
    same :func:`~.executor.run_job`; never raises for a run's own failure."""
    warnings.showwarning = one_line_warning
    import torch

    torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS = num_cpus; torch may not
    return run_job(job)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check_reachable(address: str) -> None:
    """Refuse an address nothing listens on in seconds, not after Ray's long reconnects."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayBackendError(f"--address must be auto or HOST:PORT (the head's GCS port, "
                              f"6379 by default), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise RayBackendError(f"no Ray cluster reachable at {address} ({why}); start one "
                              "with `ray start --head` or fix --address") from None


@dataclass
class RayCluster:
    """A connection to a Ray cluster for one sweep: :meth:`prepare` (no network),
    :meth:`connect`, :meth:`packing`, :meth:`execute`; a context manager that disconnects
    if it connected."""

    ray: ModuleType
    address: str | None  # None: Ray's default (RAY_ADDRESS, else a Ray started here)
    gpus_per_run: float | None
    connected_here: bool = False

    @classmethod
    def prepare(cls, address: str | None, workers: int | None,
                gpus_per_run: float | None) -> RayCluster:
        try:
            import ray
        except ImportError:
            raise RayBackendError(f"the ray backend needs Ray, which is not installed: "
                                  f"{INSTALL_HINT}") from None
        if workers:
            raise ConfigError("--workers is for the local backend: on Ray the cluster's CPUs "
                              "decide how many runs go at once (--threads sets each run's)")
        check_gpus_per_run(gpus_per_run)
        return cls(ray, address or None, gpus_per_run)

    @property
    def where(self) -> str:
        return self.address or "(Ray's default address)"

    def connect(self, configs: list[RunConfig], threads: int | None, log) -> None:
        """Join the cluster (unless this process already has) and check that it has the
        CPUs and GPUs one run of each config asks for; raises :class:`RayBackendError`."""
        ray = self.ray
        if not ray.is_initialized():
            if self.address and self.address != "auto" and "://" not in self.address:
                _check_reachable(self.address)
            try:
                ray.init(address=self.address, logging_level=logging.WARNING)
            except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ...
                raise RayBackendError(f"cannot connect to a Ray cluster at {self.where}: "
                                      f"{_first_line(e)}") from None
            self.connected_here = True
        try:
            self._check_fits(configs, threads)
        except RayBackendError:
            self.close()
            raise

    def _check_fits(self, configs: list[RunConfig], threads: int | None) -> None:
        total = self.ray.cluster_resources()
        cpus = threads or 1
        if total.get("CPU", 0) < cpus:
            raise RayBackendError(f"each run asks for {cpus} CPU(s) (--threads) but the Ray "
                                  f"cluster at {self.where} has {total.get('CPU', 0):g}")
        gpus = max(self.run_gpus(cfg) for cfg in configs)
        if gpus and total.get("GPU", 0) < gpus:
            raise RayBackendError(
                f"runs on {configs[0].train.device} ask for {gpus:g} GPU(s) each but the Ray "
                f"cluster at {self.where} has {total.get('GPU', 0):g}; add GPU nodes or use "
                "--device cpu")

    def run_gpus(self, cfg: RunConfig) -> float:
        """GPUs one run of ``cfg`` asks for: ``gpus_per_run`` when given, else 1 for a
        ``cuda`` device and 0 otherwise (Ray hides the GPUs from a task asking for none, so
        device ``auto`` then trains on the CPU)."""
        if self.gpus_per_run is not None:
            return float(self.gpus_per_run)
        return 1.0 if cfg.train.device.startswith("cuda") else 0.0

    def packing(self, cfg: RunConfig, threads: int | None) -> Packing:
        """The resources of each run and how many the cluster runs at once now (Ray's
        scheduler decides; an autoscaling cluster may grow)."""
        total = self.ray.cluster_resources()
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        t, gpus = threads or 1, self.run_gpus(cfg)
        at_once = int(total.get("CPU", 0) // t)
        if gpus:
            at_once = min(at_once, int(total.get("GPU", 0) // gpus))
        each = f"{t} CPU(s)" + (f" + {gpus:g} GPU" if gpus else "")
        return Packing(max(1, at_once), t,
                       f"Ray cluster at {self.where}: {nodes} node(s), "
                       f"{total.get('CPU', 0):g} CPU(s), {total.get('GPU', 0):g} GPU(s); "
                       f"{each} per run, {at_once} at once")

    def execute(self, jobs: list[Task | list[Task]], packing: Packing, record) -> None:
        """Submit every job (in the given order: Ray starts queued tasks of the same
        resources first in, first out) and ``record`` each job's rows as they return."""
        ray = self.ray
        remote = ray.remote(run_on_worker)
        pending = {}
        for job in jobs:
            tasks = job_tasks(job)
            options = dict(num_cpus=packing.threads, num_gpus=self.run_gpus(tasks[0].config),
                           max_retries=MAX_RETRIES, name=_task_name(tasks))
            pending[remote.options(**options).remote(job, packing.threads)] = job
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    outs = ray.get(ref)
                except ray.exceptions.RayError as e:
                    outs = lost_outcomes(job, self._lost_message(e))
                for out in outs:
                    record(out["row"], out["curves"])

    def _lost_message(self, e: Exception) -> str:
        """The error of a job Ray could not bring back: its worker or node lost after
        every retry, or the task failed to start (e.g. cnnlab missing on that node)."""
        errors = self.ray.exceptions
        lost = (errors.WorkerCrashedError, errors.NodeDiedError, errors.OutOfMemoryError,
                errors.ObjectLostError, errors.LocalRayletDiedError)
        if isinstance(e, lost):
            return f"Ray worker lost {MAX_RETRIES + 1} times: {_first_line(e)}"
        cause = getattr(e, "cause", None)
        if cause is not None:
            return f"Ray task failed: {type(cause).__name__}: {_first_line(cause)}"
        return f"Ray: {type(e).__name__}: {_first_line(e)}"

    def close(self) -> None:
        if self.connected_here:
            self.ray.shutdown()  # ends this driver's job; the cluster keeps running
            self.connected_here = False

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _task_name(tasks: list[Task]) -> str:
    """``cnnlab:SWEEP:CELL:rep0`` (reps ``0-2`` for a stacked cell): the name ``ray list
    tasks`` and the worker's process title (``ray::NAME``) show."""
    reps = str(tasks[0].rep) if len(tasks) == 1 else f"{tasks[0].rep}-{tasks[-1].rep}"
    return f"cnnlab:{tasks[0].sweep}:{tasks[0].cell.key}:rep{reps}"
