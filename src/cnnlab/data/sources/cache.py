"""Where cnnlab keeps downloads and decoded images, and the decode cache itself.

Cache root (``cache_dir``): the ``root`` argument if given, else ``$CNNLAB_HOME``, else
``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``.  Layout under it::

    cifar10/cifar-10-python.tar.gz      downloaded archive (verified before it is renamed here)
    cifar10/cifar-10-batches-py/        extracted batches (verified before it is renamed here)
    mnist/train-images-idx3-ubyte.gz    downloaded IDX files
    decoded/<name>-<key>/               decode cache of a folder source: one .npy per array

A decode-cache entry is a folder written under a temporary name and renamed into place
once every file in it is complete and flushed, so an entry that exists is whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.utils.io import fsync_dir

CACHE_VERSION = 1  # bump when the stored layout or the decoding changes meaning

_CHUNK = 1 << 20  # bytes read per step when hashing


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The cache root: ``root``, else $CNNLAB_HOME, $XDG_CACHE_HOME/cnnlab, ~/.cache/cnnlab.

    Nothing is created here; writers create the folders they need.
    """
    if root:
        return Path(root).expanduser()
    home = os.environ.get("CNNLAB_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cnnlab"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``algorithm``: any hashlib name, e.g. "md5", "sha256")."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def text_key(*parts: object) -> str:
    """A sha256 hex key of the given parts (their ``repr``, in order)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def temp_sibling(path: Path) -> Path:
    """A unique hidden name next to ``path``, for writing before an atomic rename."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass
class Decoded:
    """One decode-cache entry: named uint8/int64 arrays plus a JSON-able ``meta`` dict."""

    path: Path
    arrays: dict[str, np.ndarray]
    meta: dict


def decoded_path(root: str | os.PathLike | None, name: str, key: str) -> Path:
    """Folder of the decode-cache entry for source ``name`` with content ``key``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    return cache_dir(root) / "decoded" / f"{safe}-{key[:24]}"


def load_decoded(path: Path) -> Decoded | None:
    """Read a decode-cache entry; None when it is absent, of another version, or unreadable."""
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("cache_version") != CACHE_VERSION:
            return None
        # copy-on-write memory maps: loading is instant, pages are read when first touched,
        # and the arrays stay writable (a write changes this process's copy, never the file)
        arrays = {k: np.load(path / f"{k}.npy", mmap_mode="c", allow_pickle=False)
                  for k in meta["arrays"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Decoded(path, arrays, meta)


def store_decoded(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write a decode-cache entry atomically: a temporary folder, fsync, then rename.

    A concurrent writer of the same entry is harmless: whichever rename lands first wins
    and the other copy is discarded (both hold the same content).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.mkdir()
    try:
        for k, a in arrays.items():
            with open(tmp / f"{k}.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(a), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        full = {**meta, "cache_version": CACHE_VERSION, "arrays": sorted(arrays)}
        with open(tmp / "meta.json", "w") as f:
            json.dump(full, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # a broken or stale entry (load_decoded refused it): replace it
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "meta.json").is_file():
                raise
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path
