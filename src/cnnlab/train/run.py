"""Runs of any ``nn.Module`` from a configuration: data, loaders, run folder, resume.

    result = cnnlab.fit(model, "digits", config)            # any nn.Module

Building the model a config names is one floor up: :func:`cnnlab.experiments.run.train_run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from cnnlab import __version__
from cnnlab.config import RESUME_SAFE_KEYS, RunConfig, apply_overrides, config_diff
from cnnlab.data.augment import build_pipeline
from cnnlab.data.dataset import Dataset, ImageSet
from cnnlab.data.loader import DeviceLoader
from cnnlab.data.treatments import apply_treatments
from cnnlab.errors import TrainingError
from cnnlab.train import distributed
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.hardware import resolve_channels_last, resolve_device
from cnnlab.train.trainer import Loaders, RunResult, Trainer
from cnnlab.utils.io import atomic_write_json, atomic_write_text
from cnnlab.utils.toml_write import dumps as toml_dumps

_DATA_CACHE: dict[tuple, Dataset] = {}
_LOADER_ONLY_KEYS = {"batch_size", "eval_batch_size", "augment", "normalize", "drop_last",
                     "alternating_flip", "low_res", "low_res_epochs", "aug_repeats"}


def prepare_data(cfg: RunConfig) -> Dataset:
    """Load ``cfg.data.spec`` with its test/validation carving, then ``data.limit``, then the
    treatments of :mod:`cnnlab.data.treatments` (``data.train_size``, ``data.label_noise``,
    ``data.pixels``) on the training split (cached per process)."""
    d = cfg.data
    # every data key but those only the loaders read: a new treatment key is in it too
    key = tuple(sorted((k, repr(v)) for k, v in dataclasses.asdict(d).items()
                       if k not in _LOADER_ONLY_KEYS))
    if key not in _DATA_CACHE:
        from cnnlab.data import load_dataset

        ds = load_dataset(d.spec, d.root or None, val_fraction=d.val_fraction,
                          test_fraction=d.test_fraction, split_seed=d.split_seed,
                          resize=d.resize, skip_bad=d.skip_bad)
        if d.limit and d.limit < len(ds.train):
            # a seeded draw, not the first N: folder sources store their splits class by class
            g = torch.Generator().manual_seed(d.split_seed)
            keep = torch.randperm(len(ds.train), generator=g)[:d.limit].sort().values
            ds.train = ds.train.subset(keep)
        ds, _ = apply_treatments(ds, d)
        _DATA_CACHE.clear()  # keep one dataset in memory at a time
        _DATA_CACHE[key] = ds
    return _DATA_CACHE[key]


def build_loaders(ds: Dataset, cfg: RunConfig, device: torch.device,
                  channels_last: bool, stats: tuple | None = None) -> tuple[Loaders, dict]:
    """On-device loaders for each split; normalization statistics from the training split.

    In a process group each rank's loaders read its slices of the global batches
    (``data.batch_size`` is the global batch; see :mod:`cnnlab.train.distributed`)."""
    d = cfg.data
    w = distributed.world()
    distributed.check_config(cfg, w.size)
    shard = dict(rank=w.rank, world_size=w.size)
    eval_batch = -(-d.eval_batch_size // w.size)  # per rank; evaluation sums over ranks
    mean, std = stats or ds.train.mean_std()
    norm = {"mean": mean, "std": std} if d.normalize else {}
    h = ds.train.shape[0]
    common = dict(device=device, channels_last=channels_last, **norm)
    augment = build_pipeline(d.augment, ds.num_classes, image_size=h)
    loaders = Loaders(
        train=DeviceLoader(ds.train, d.batch_size // w.size, shuffle=True,
                           drop_last=d.drop_last, seed=cfg.train.seed, augment=augment,
                           alternating_flip=d.alternating_flip, low_res=d.low_res,
                           low_res_epochs=d.low_res_epochs, aug_repeats=d.aug_repeats,
                           **shard, **common),
        val=DeviceLoader(ds.val, eval_batch, shuffle=False, drop_last=False, **shard, **common)
        if ds.val is not None else None,
        test=DeviceLoader(ds.test, eval_batch, shuffle=False, drop_last=False, **shard, **common)
        if ds.test is not None else None,
    )
    if cfg.train.precise_bn:  # the same batches on every rank: the same statistics
        loaders.train_eval = DeviceLoader(ds.train, d.batch_size, shuffle=True, drop_last=False,
                                          seed=cfg.train.seed, **common)
    return loaders, {"mean": mean, "std": std}


def _as_dataset(data, cfg: RunConfig) -> tuple[Dataset, RunConfig]:
    if isinstance(data, str):
        cfg = apply_overrides(cfg, {"data.spec": data})
        return prepare_data(cfg), cfg
    if isinstance(data, ImageSet):
        data = Dataset("custom", data)
    if isinstance(data, Dataset):
        if data.val is None and cfg.data.val_fraction > 0:
            from cnnlab.data.dataset import with_splits

            data = with_splits(data, cfg.data.val_fraction,
                               cfg.data.test_fraction if data.test is None else 0.0,
                               cfg.data.split_seed)
        if "treatments" not in data.info:  # prepare_data's datasets are treated already
            data = apply_treatments(data, cfg.data)[0]
        return data, cfg
    if data is None:
        return prepare_data(cfg), cfg
    raise TrainingError(f"data must be a spec string, Dataset or ImageSet, got {type(data)}")


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _write_run_folder(out: Path, cfg: RunConfig, ds: Dataset, stats: dict, model: nn.Module,
                      parallel: dict):
    out.mkdir(parents=True, exist_ok=True)
    h, w, c = ds.train.shape
    info = {
        "config": cfg.to_dict(),
        "dataset": {"name": ds.name, "spec": cfg.data.spec, "classes": ds.classes,
                    "num_classes": ds.num_classes, "image_shape": [h, w, c],
                    "sizes": {k: len(v) for k, v in ds.splits().items()}, **stats,
                    **({"treatments": ds.info["treatments"]} if "treatments" in ds.info
                       else {})},
        "model": {"name": getattr(model, "model_name", type(model).__name__),
                  "args": getattr(model, "model_args", {})},
        "seed": cfg.train.seed,
        "parallel": parallel,
        "rerun": f"cnnlab train --config {out / 'run.toml'}{_nproc_flags(parallel)}",
        "resume": f"cnnlab train --resume {out}{_nproc_flags(parallel)}",
        "versions": {"cnnlab": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "git_revision": git_revision(),
        "command": sys.argv,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    atomic_write_json(out / "config.json", info)
    tables = cfg.to_dict()
    tables["data"] = {k: v for k, v in tables["data"].items() if v not in (None, "")}
    atomic_write_text(out / "run.toml", "# rerun with: cnnlab train --config run.toml\n"
                      + toml_dumps(tables))


def _nproc_flags(parallel: dict) -> str:
    """`` --nproc N`` for a run of N processes on one machine (more machines: the same
    flags as its first start, on every machine)."""
    n = parallel.get("world_size", 1)
    return f" --nproc {n}" if parallel.get("launched") else ""


def fit(model: nn.Module, data=None, config: RunConfig | None = None,
        out_dir: str | Path | None = None, callbacks=None, resume: bool | str = False,
        progress: bool | None = None, **overrides) -> RunResult:
    """Train any ``nn.Module`` on ``data`` (a spec string, Dataset or ImageSet).

    ``overrides`` are dotted keys with dots written as double underscores
    (``fit(m, "digits", train__epochs=2)``) or pass ``config=cfg.set(...)``.
    """
    cfg = config or RunConfig()
    if overrides:
        cfg = apply_overrides(cfg, {k.replace("__", "."): v for k, v in overrides.items()})
    ds, cfg = _as_dataset(data, cfg)
    device = resolve_device(cfg.train.device)
    channels_last = resolve_channels_last(cfg.train.channels_last, device)
    out = Path(out_dir) if out_dir else None
    if out is None:
        loaders, _ = build_loaders(ds, cfg, device, channels_last)
        return Trainer(model, loaders, cfg, callbacks=callbacks, num_classes=ds.num_classes,
                       progress=progress).fit()
    world = distributed.world()
    # rank 0 alone owns the run folder: it locks it, reads the checkpoint and writes; the
    # other ranks get the state from it (they need no access to the folder)
    with contextlib.ExitStack() as held:
        created: Path | None = None
        started = False
        written: list[Path] = []

        def begin() -> dict | None:  # on rank 0; its refusal is raised on every rank
            nonlocal created
            created = held.enter_context(_locked_run_folder(out))
            return _start_state(out, cfg, resume, world)

        try:
            state = distributed.share_outcome(begin)
            loaders, stats = build_loaders(ds, cfg, device, channels_last)
            trainer = Trainer(model, loaders, cfg, out_dir=out, callbacks=callbacks,
                              num_classes=ds.num_classes, progress=progress)
            trainer.check_inputs()  # refuse before anything is written
            if state is None:
                if world.is_main:
                    written = [p for p in (out / "config.json", out / "run.toml")
                               if not p.exists()]
                    _write_run_folder(out, cfg, ds, stats, model, trainer.parallel_info())
            else:
                trainer.load_state_dict(state)
            started = True
            return trainer.fit()
        except BaseException as e:
            if not world.is_main:
                raise
            if not started:  # refused (or interrupted) before the first step: leave no stub
                _remove_created(created, written)
                if isinstance(e, OSError):
                    raise TrainingError(f"{_os_error(e, out)}; nothing was kept") from None
            elif isinstance(e, OSError):
                kept = checkpoint_note(out)
                then = (f"kept {kept}: free space and resume with: cnnlab train --resume {out}"
                        if kept else "no checkpoint was written yet: free space and run again")
                raise TrainingError(f"{_os_error(e, out)}; {then}") from None
            raise


def _start_state(out: Path, cfg: RunConfig, resume: bool | str,
                 world: distributed.World) -> dict | None:
    """The checkpoint state a run in ``out`` continues from, None for a fresh start; a
    folder that holds a run is refused unless resuming."""
    state = _resume_state(out, cfg, required=resume is True, world_size=world.size) \
        if resume else None
    ckpts = out / "checkpoints"
    if state is None and any((ckpts / n).exists() for n in ("last.pt", "last.prev.pt")):
        raise TrainingError(f"{out} already holds a run; resume it (cnnlab train "
                            f"--resume {out}) or choose another folder")
    return state


@contextlib.contextmanager
def _locked_run_folder(out: Path):
    """Create ``out`` if needed and hold an exclusive lock on it (flock on the folder
    itself, so nothing is added to it; the OS releases it even on SIGKILL). Yields the
    topmost folder this call created (None if ``out`` existed)."""
    created = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_RDONLY)
    except OSError as e:
        raise TrainingError(f"cannot create run folder {out}: "
                            f"{e.strerror or type(e).__name__}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrainingError(f"run folder {out} is in use by another cnnlab process; wait "
                                "for it to finish or stop it, or choose another --out") from None
        yield created
    finally:
        os.close(fd)


def _remove_created(created: Path | None, written: list[Path]) -> None:
    """Undo what a refused run wrote: the folders it created, else the files it added."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for path in written:
        with contextlib.suppress(OSError):
            path.unlink()


def _os_error(e: OSError, out: Path) -> str:
    """``cannot write PATH: No space left on device`` for an OSError while writing a run."""
    what = e.strerror or str(e) or type(e).__name__
    return f"cannot write {e.filename or out}: {what}"


def checkpoint_note(out: str | Path) -> str | None:
    """The checkpoint ``--resume`` would continue an interrupted or failed run in ``out``
    from, as ``"runs/x/checkpoints/last.pt (epoch 2, step 80)"``; None when there is none."""
    for name in ("last.pt", "last.prev.pt"):
        path = Path(out) / "checkpoints" / name
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return f"{path} (epoch {state['epoch']}, step {state['step']})"
        except Exception:  # noqa: BLE001 - missing or unreadable: try the previous copy
            continue
    return None


def _resume_state(out: Path, cfg: RunConfig, required: bool,
                  world_size: int = 1) -> dict | None:
    ckpt = out / "checkpoints" / "last.pt"
    if not (ckpt.exists() or ckpt.with_suffix(".prev.pt").exists()):
        if required:
            raise TrainingError(f"nothing to resume in {out}: no checkpoints/last.pt")
        return None
    state = load_checkpoint(ckpt)
    diff = config_diff(state["config"], cfg.flat(), ignore=RESUME_SAFE_KEYS)
    if diff:
        saved = state["config"]
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {cfg.flat().get(k)!r}" for k in diff[:6])
        raise TrainingError(f"cannot resume {out} with a different config ({shown})")
    distributed.check_resume_world(out, state.get("world_size", 1), world_size)
    return state


def saved_config(run_dir: str | Path) -> RunConfig:
    """The resolved config a run folder was started with."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise TrainingError(f"{run_dir} is not a run folder: no config.json")
    from cnnlab.config import from_dict

    return from_dict(json.loads(path.read_text())["config"])


__all__ = ["build_loaders", "checkpoint_note", "fit", "prepare_data", "saved_config"]
