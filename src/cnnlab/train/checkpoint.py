"""Checkpoints: atomic writes, a previous copy kept as fallback, ``weights_only`` loads.

Layout in a run folder::

    checkpoints/last.pt       newest state (end of epoch or every N steps)
    checkpoints/last.prev.pt  the one before, used when last.pt is damaged
    checkpoints/best.pt       weights and metrics of the best epoch so far

A save writes the new file first and only then moves the old ``last.pt`` to
``last.prev.pt``: a save that fails (a full disk) leaves both as they were.  A ``last.pt``
that cannot be read (empty, truncated, garbage) is never rotated over ``last.prev.pt``:
after a fallback the good previous copy stays until a new good ``last.pt`` is written.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import TrainingError
from cnnlab.utils.io import fsync_dir, write_temp

# checkpoints this process found unreadable (load fell back): never rotated to *.prev.pt
_UNREADABLE: set[Path] = set()


def _rotatable(path: Path) -> bool:
    """Whether ``path`` may become the previous copy: not known unreadable, and a complete
    zip archive (what torch.save writes; an empty or truncated file has no end record)."""
    if path.resolve() in _UNREADABLE:
        return False
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def save_checkpoint(path: str | Path, state: dict, keep_previous: bool = True) -> Path:
    """Serialize to memory, write a temporary file beside ``path``, then rotate the old file
    to *.prev.pt (unless it is unreadable) and move the new one in. A failed write (OSError
    naming ``path``) leaves the existing files untouched."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = write_temp(path, lambda f: f.write(buffer.getbuffer()))
    try:
        if keep_previous and path.exists() and _rotatable(path):
            os.replace(path, path.with_suffix(".prev.pt"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _UNREADABLE.discard(path.resolve())
    fsync_dir(path.parent)
    return path


def _load(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError("not a cnnlab checkpoint (no 'model' entry)")
    return state


def load_checkpoint(path: str | Path) -> dict:
    """Load ``path``; if it is truncated or garbage, fall back to ``*.prev.pt`` with a
    warning; if neither loads, raise a TrainingError naming both files."""
    path = Path(path)
    candidates = [path, path.with_suffix(".prev.pt")]
    errors = []
    for i, candidate in enumerate(candidates):
        if not candidate.exists():
            errors.append(f"{candidate}: missing")
            continue
        try:
            state = _load(candidate)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
            errors.append(f"{candidate}: {_describe(e, candidate)}")
            continue
        if i > 0:
            _UNREADABLE.add(path.resolve())
            warnings.warn(
                f"checkpoint {path} is unreadable ({errors[0]}); resuming from {candidate}",
                stacklevel=2,
            )
        return state
    raise TrainingError("no usable checkpoint: " + "; ".join(errors))


def _describe(e: Exception, path: Path) -> str:
    """One line for why ``path`` did not load (some errors have an empty message)."""
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:120]}" if lines else type(e).__name__


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) generator states, as weights_only-safe types."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuplify(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, list | tuple) else x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
