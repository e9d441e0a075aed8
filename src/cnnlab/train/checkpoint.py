"""Checkpoints: atomic writes, a previous copy kept as fallback, ``weights_only`` loads.

Layout in a run folder::

    checkpoints/last.pt       newest state (end of epoch or every N steps)
    checkpoints/last.prev.pt  the one before, used when last.pt is damaged
    checkpoints/best.pt       weights and metrics of the best epoch so far
"""

from __future__ import annotations

import io
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import TrainingError
from cnnlab.utils.io import atomic_write


def save_checkpoint(path: str | Path, state: dict, keep_previous: bool = True) -> Path:
    """Serialize to memory first, then write atomically; rotate the old file to *.prev.pt."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    if keep_previous and path.exists():
        os.replace(path, path.with_suffix(".prev.pt"))
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


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
            errors.append(f"{candidate}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            continue
        if i > 0:
            warnings.warn(
                f"checkpoint {path} is unreadable ({errors[0]}); resuming from {candidate}",
                stacklevel=2,
            )
        return state
    raise TrainingError("no usable checkpoint: " + "; ".join(errors))


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
