"""Data-parallel training with torch.distributed: one model on several processes.

A process started by ``torchrun`` (or by ``cnnlab train --nproc N``, which calls the same
launcher, :func:`launch`) finds ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in its environment; :func:`process_group` joins the group (gloo for CPU
tensors, NCCL for CUDA tensors) and the trainer then reads :func:`world`:

- the model is wrapped in ``DistributedDataParallel`` (gradients averaged by its all-reduce);
- each rank reads its own slice of every global batch of the on-device loader (same seeded
  permutation on every rank: disjoint slices whose union is the epoch);
- metrics are summed across ranks (:func:`all_reduce_sum`), so every rank sees the same
  numbers and takes the same decisions (early stopping, divergence);
- rank 0 alone writes files; it reads the checkpoint and hands its state to the others
  (:func:`broadcast_from_main`), so other machines need no access to the run folder.

Without a process group every helper here is a no-op on one process (world size 1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from cnnlab.errors import CnnlabError, TrainingError

# what torchrun sets for every worker process
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    rank: int = 0  # global rank of this process
    size: int = 1  # number of processes (nproc per machine x machines)
    local_rank: int = 0  # rank on this machine: picks its GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def grouped(self) -> bool:
        """In a process group (also of one process, ``--nproc 1``): collectives run."""
        return dist.is_available() and dist.is_initialized()


def world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def launched() -> bool:
    """Whether this process was started by torchrun (or ``--nproc``) as one rank of a job."""
    return all(k in os.environ for k in LAUNCH_ENV)


class MainRankError(TrainingError):
    """The error rank 0 met, raised on the other ranks too (rank 0 reports it)."""


@contextlib.contextmanager
def process_group():
    """Join the process group of a launched rank for the duration of the block; yields its
    :class:`World`. CPU tensors travel by gloo, CUDA tensors (one GPU per local rank) by
    NCCL."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend)
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def lost_partner(e: BaseException) -> bool:
    """Whether ``e`` is a collective failing because another rank is gone (its launcher
    names the rank that failed first): a torch.distributed error, or any error raised
    inside one of torch's collectives (gloo raises a plain RuntimeError)."""
    if isinstance(e, dist.DistError):
        return True
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith("distributed_c10d.py"):
            return True
        tb = tb.tb_next
    return False


def backend_name(device: torch.device) -> str:
    """The backend carrying this device's tensors: gloo on CPU, nccl on CUDA."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, w: World) -> torch.device:
    """A CUDA device of a rank in a group is the GPU of its local rank (``cuda`` or
    ``cuda:N`` alike: one GPU per process, as NCCL needs)."""
    if w.grouped and device.type == "cuda":
        return torch.device("cuda", w.local_rank % torch.cuda.device_count())
    return device


# -- collectives (torch's own; no-ops without a group) ---------------------------------------

def all_reduce_sum(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Copies of ``tensors`` summed over the ranks (the tensors themselves unchanged)."""
    out = [t.clone() for t in tensors]
    if world().grouped:
        for t in out:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return out


def barrier() -> None:
    """Wait until every rank gets here (nothing to do in a single process)."""
    if world().grouped:
        dist.barrier()


def exit_now(code: int) -> None:
    """End a rank whose work is done on every rank (after :func:`barrier`) without the
    interpreter's teardown: gloo's threads, torn down by C++ destructors at exit, can abort
    a rank (SIGABRT, "terminate called without an active exception") after a clean run."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def all_finite(value: torch.Tensor) -> bool:
    """Whether ``value`` is finite on every rank (all ranks get the same answer, so a rank
    never waits in a backward pass the others skipped)."""
    ok = torch.isfinite(value.detach()).all().to(torch.int32)
    if world().grouped:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok)


def mean_over_ranks(value: torch.Tensor) -> float:
    (total,) = all_reduce_sum(value.detach().double())
    return float(total) / world().size


def broadcast_from_main(obj):
    """Rank 0's ``obj`` on every rank (pickled by torch's object broadcast)."""
    if not world().grouped:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(obj) -> list | None:
    """``[obj of rank 0, obj of rank 1, ...]`` on rank 0, None on the others."""
    w = world()
    if not w.grouped:
        return [obj]
    out = [None] * w.size if w.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def share_outcome(compute):
    """Run ``compute()`` on rank 0 and return its result on every rank; a user error it
    raises is raised on every rank (as :class:`MainRankError` on the others, which rank 0
    reports), so no rank waits for a partner that has given up."""
    result, error = None, None
    if world().is_main:
        try:
            result = compute()
        except CnnlabError as e:  # user errors travel to the others; a bug crashes rank 0
            error = e
    result, message = broadcast_from_main((result, None if error is None else str(error)))
    if error is not None:
        raise error
    if message is not None:
        raise MainRankError(message)
    return result


@torch.no_grad()
def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank, as DDP does before each
    training forward: evaluation and checkpoints then see one model."""
    if not world().grouped:
        return
    for b in model.buffers():
        dist.broadcast(b, src=0)


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` (already on ``device``) wrapped in DistributedDataParallel (it broadcasts
    rank 0's weights now and rank 0's buffers before every forward). The module itself
    keeps the weights: its state_dict has no ``module.`` prefix."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def check_config(cfg, world_size: int) -> None:
    """Refuse, in one line, a config that cannot run on ``world_size`` processes.

    ``data.batch_size`` is the global batch: each process takes ``batch_size / world_size``
    images per step, so the run is the one a single process with that batch would do."""
    if world_size == 1:
        return
    b = cfg.data.batch_size
    if b % world_size:
        fits = max(world_size, round(b / world_size) * world_size)
        raise TrainingError(
            f"data.batch_size = {b} does not split over {world_size} processes (it is the "
            f"global batch; each process takes batch_size / {world_size}); use a multiple "
            f"of {world_size}, e.g. --set data.batch_size={fits}")
    if not cfg.data.drop_last:
        raise TrainingError("data.drop_last = false cannot run on several processes (a short "
                            "last batch would give the ranks unequal steps); drop the setting")


def check_resume_world(run: object, saved: int, world_size: int) -> None:
    """A run resumes on as many processes as it was trained on (its data order and random
    streams are per process)."""
    if saved != world_size:
        how = f"--nproc {saved}" if saved > 1 else "without --nproc"
        raise TrainingError(f"{run} was trained on {saved} process(es), not {world_size}: its "
                            f"data order and random streams are per process; resume it {how}")


def check_sync_bn(device: torch.device) -> None:
    if device.type != "cuda":
        raise TrainingError(f"train.sync_bn needs CUDA GPUs: torch's SyncBatchNorm does not "
                            f"run on {device.type} tensors; drop --set train.sync_bn=true")


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norms as SyncBatchNorm (statistics over the global batch); CUDA only."""
    check_sync_bn(device)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


# -- the launcher: torch's elastic launch, as torchrun runs it ------------------------------

@dataclass(frozen=True)
class Launch:
    nproc: int  # processes per machine
    nnodes: int = 1  # machines
    node_rank: int = 0  # this machine's rank, 0..nnodes-1
    master_addr: str | None = None  # rank 0's machine (static rendezvous, as torchrun)
    master_port: int | None = None  # a free port there

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes

    def launch_config(self):
        from torch.distributed.launcher.api import LaunchConfig

        common = dict(min_nodes=self.nnodes, max_nodes=self.nnodes, nproc_per_node=self.nproc,
                      max_restarts=0, run_id=f"cnnlab-{uuid.uuid4().hex[:12]}",
                      start_method="spawn")
        if self.nnodes == 1 and self.master_addr is None and self.master_port is None:
            # torchrun --standalone: a rendezvous on this machine, on a free port
            return LaunchConfig(rdzv_backend="c10d", rdzv_endpoint="localhost:0", **common)
        # torchrun's default: static rendezvous at MASTER_ADDR:MASTER_PORT, this node's rank
        addr, port = self.master_addr or "127.0.0.1", self.master_port or 29500
        return LaunchConfig(rdzv_backend="static", rdzv_endpoint=f"{addr}:{port}",
                            rdzv_configs={"rank": self.node_rank}, **common)


@dataclass
class LaunchOutcome:
    exit_code: int  # 0 ok, 2 a user error (already printed by the rank), 130 interrupted
    message: str = ""  # why it failed, when no rank said so itself


def _root_failure(failures: dict) -> tuple[int, object]:
    """The failure that caused the others: a rank killed by a signal other than the
    agent's SIGTERM, else a rank's own error (exit code 2, printed by it), else the first."""
    def rank(item):
        _, f = item
        if f.exitcode < 0 and -f.exitcode != signal.SIGTERM:
            return 0
        return 1 if f.exitcode in (2, 3) else 2
    return min(sorted(failures.items()), key=rank)


def launch(command: list[str], spec: Launch) -> LaunchOutcome:
    """Run ``python COMMAND...`` as ``spec.nproc`` ranks on this machine (of
    ``spec.nnodes``) under torch's elastic agent, and wait for all of them."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    if spec.nproc > 1:  # torchrun's rule: one thread per process unless told otherwise
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    # the agent's own log lines (each of its loggers has its own level); failures are told
    # below, in one line
    quiet = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
             if name.startswith("torch.distributed")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        elastic_launch(spec.launch_config(), sys.executable)(*command)
        return LaunchOutcome(0)
    except ChildFailedError as e:
        rank, f = _root_failure(e.failures)
        if f.exitcode in (2, 3, 130):  # a user error, divergence, Ctrl-C: told by the rank
            return LaunchOutcome(f.exitcode)
        how = (f"was killed by {f.signal_name()}" if f.exitcode < 0
               else f"exited with code {f.exitcode}")
        return LaunchOutcome(1, f"process of rank {rank} (of {spec.world_size}) {how}")
    except SignalException:
        return LaunchOutcome(130)
    except KeyboardInterrupt:
        return LaunchOutcome(130)
    except (RuntimeError, ValueError, OSError) as e:  # rendezvous: address, port, timeout
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return LaunchOutcome(1, f"cannot start the {spec.world_size} processes: {first}")
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


__all__ = ["Launch", "LaunchOutcome", "MainRankError", "World", "all_finite", "all_reduce_sum",
           "broadcast_from_main", "convert_sync_bn", "data_parallel", "gather_to_main",
           "launch", "launched", "process_group", "rank_device", "share_outcome",
           "sync_buffers", "world"]
