"""The source registry, dataset spec strings and ``load_dataset``, the one entry point to
every data source.

A source is a function ``load(req: SourceRequest) -> Dataset`` registered under one or
more names with :func:`register_source`; a spec string names it, optionally with a
local path: ``cifar10``, ``cifar10:PATH``, ``folder:PATH``.  The built-in sources are the
modules of this package (``cifar``, ``mnist``, ``digits``, ``folder``), found by importing
every module of it on first use, so a new source is one file holding its registration.

Everything that lists sources (spec parsing, the "known: ..." part of error messages,
``cnnlab data --help``) reads the registry.  Listing imports every source module, so
those modules import torch, Pillow and other heavy libraries inside the functions that
load data: ``cnnlab data info`` answers from its cache without loading torch.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.errors import DataError, close_matches

if TYPE_CHECKING:
    from cnnlab.data.dataset import Dataset

# the order sources are listed in (help, error messages): published datasets fetched and
# verified, data bundled with a dependency, then the user's own files
KINDS = ("official", "bundled", "files")


@dataclass(frozen=True)
class SourceRequest:
    """What ``load_dataset`` asks a source for: one of its names and the options."""

    name: str  # canonical source name, e.g. "cifar10"
    path: str | None  # PATH of "name:PATH"; None when the spec has none
    root: str | None  # cache root (None: see ``cache.cache_dir``)
    resize: int  # 0 keeps the size; N asks for N x N images
    skip_bad: bool  # skip unreadable files with a warning instead of failing
    download: bool  # fetch what the cache lacks; False fails instead
    progress: bool | None  # progress bars; None: only when stderr is a terminal


@dataclass(frozen=True)
class SourceEntry:
    """One registered source name and what the registry knows about it."""

    name: str
    load: Callable[[SourceRequest], Dataset]
    kind: str  # one of KINDS
    takes_path: bool  # "name:PATH" is allowed
    needs_path: bool  # only "name:PATH" is allowed
    resizes: bool  # the loader decodes at ``req.resize`` itself (else resized afterwards)
    help: str  # one line for ``cnnlab data --help``: what the source is
    path_help: str  # what PATH is, for the help and the "needs a path" error
    group: tuple[str, ...]  # the names registered together ("cifar10", "cifar100")


_REGISTRY: dict[str, SourceEntry] = {}  # registration order
_discovered = False


def register_source(*names: str, kind: str = "files", takes_path: bool = False,
                    needs_path: bool = False, resizes: bool = False, help: str = "",
                    path_help: str = "") -> Callable:
    """Register ``load(req: SourceRequest) -> Dataset`` under the spec names ``names``.

    ``kind`` orders the listing (one of :data:`KINDS`); ``takes_path`` allows a
    ``name:PATH`` spec and ``needs_path`` requires one; ``resizes`` says the loader
    honours ``req.resize`` itself.  ``help`` says what the source is and ``path_help`` what
    its PATH is (both appear in ``cnnlab data --help``).

        @register_source("mydata", takes_path=True, help="my images")
        def load(req: SourceRequest) -> Dataset: ...
    """
    if not names:
        raise ValueError("register_source needs at least one name")
    if kind not in KINDS:
        raise ValueError(f"source kind must be one of {', '.join(KINDS)}, got {kind!r}")
    taken = [n for n in names if n in _REGISTRY or n != n.lower() or ":" in n]
    if taken:
        raise ValueError(f"source name {taken[0]!r} is taken or not a lower-case spec name")

    def wrap(fn: Callable[[SourceRequest], Dataset]) -> Callable[[SourceRequest], Dataset]:
        for n in names:
            _REGISTRY[n] = SourceEntry(n, fn, kind, takes_path or needs_path, needs_path,
                                       resizes, help, path_help, tuple(names))
        return fn

    return wrap


def _discover() -> None:
    """Import every module of this package once: each registers the sources it holds."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import cnnlab.data.sources as package

    for module in pkgutil.iter_modules(package.__path__):  # sorted by module name
        importlib.import_module(f"{package.__name__}.{module.name}")


def list_sources() -> list[SourceEntry]:
    """Every registered source, by kind (see :data:`KINDS`), then in registration order."""
    _discover()
    entries = list(_REGISTRY.values())
    return sorted(entries, key=lambda e: KINDS.index(e.kind))  # stable: keeps the order


def known_specs() -> list[str]:
    """The spec forms listed in error messages: each name, or "name:PATH" if it needs one."""
    return [f"{e.name}:PATH" if e.needs_path else e.name for e in list_sources()]


def specs_help(width: int = 86) -> str:
    """The "dataset specs" lines of ``cnnlab data --help``, one or two per source group."""
    rows: list[tuple[str, str]] = []
    seen: set[tuple[str, ...]] = set()
    for e in list_sources():
        if e.group in seen:
            continue
        seen.add(e.group)
        if e.needs_path:
            rows.append((f"{e.name}:PATH", e.help))
            continue
        rows.append((", ".join(e.group), e.help))
        if e.takes_path:
            rows.append((f"{e.name}:PATH", e.path_help))
    lines = []
    for spec, text in rows:
        lines += textwrap.wrap(text, width, initial_indent=f"  {spec:<24} ",
                               subsequent_indent=" " * 27)
    return "\n".join(lines)


@dataclass(frozen=True)
class Spec:
    """A parsed spec string: the source name and the optional local path."""

    name: str
    path: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:{self.path}" if self.path else self.name


def _canonical(text: str) -> str:
    return text.lower().replace("_", "").replace("-", "")


def parse_spec(spec: str) -> Spec:
    """Parse "cifar10", "folder:PATH", "mnist:PATH", ...; DataError naming the known specs."""
    entries = list_sources()
    text = str(spec).strip()
    head, sep, path = text.partition(":")
    # "fashionmnist", "cifar-10", "Fashion_MNIST" -> the canonical name
    by_key = {_canonical(e.name): e for e in entries}
    entry = by_key.get(_canonical(head))
    known = ", ".join(known_specs())
    if entry is None:
        close = close_matches(head.lower(), sorted(e.name for e in entries))
        local = next((e for e in entries if e.needs_path), None)
        if close:
            hint = f"did you mean '{close[0]}{sep}{path}'? "
        elif not sep and text and local and Path(text).expanduser().exists():
            hint = f"did you mean '{local.name}:{text}'? "
        else:
            hint = ""
        raise DataError(f"unknown dataset '{text}'; {hint}known: {known}")
    name = entry.name
    if sep and not entry.takes_path:
        raise DataError(f"dataset '{name}' takes no path (got '{text}'); known: {known}")
    if sep and not path.strip():
        raise DataError(f"'{text}' lacks the path after ':'; e.g. '{name}:/data/{name}'")
    if entry.needs_path and not sep:
        raise DataError(f"'{name}' needs a path: '{name}:PATH' with PATH {entry.path_help}")
    return Spec(name, path.strip() or None)


def load_dataset(
    spec: str,
    root: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.0,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    resize: int = 0,
    skip_bad: bool = False,
    download: bool = True,
    progress: bool | None = None,
) -> Dataset:
    """Load a dataset by spec string into memory: uint8 (N, H, W, C) images, int64 labels.

    Args:
        spec: "cifar10", "cifar100", "mnist", "fashion-mnist", "digits", "folder:PATH",
            or "cifar10:PATH" / "mnist:PATH" ... for a local copy of an official dataset
            (any registered source, see ``cnnlab data --help``).
        root: cache folder; default $CNNLAB_HOME, else $XDG_CACHE_HOME/cnnlab or
            ~/.cache/cnnlab (see ``cache_dir``).
        val_fraction: share of the training split held out as ``val`` (seeded, stratified).
        test_fraction: share of the training split held out as ``test`` when the source has
            no official test split (seeded, stratified); ignored otherwise.
        split_seed: seed of both hold-outs; the same seed always holds out the same images.
        resize: 0 keeps the size; N resizes every image to N x N (bilinear).  Needed for
            folder sources whose images differ in size.
        skip_bad: folder sources: skip unreadable image files with a warning instead of
            failing.
        download: fetch official datasets missing from the cache; False fails instead.
        progress: progress bars on stderr; None shows them only when stderr is a terminal.

    Returns:
        A Dataset with ``train``, ``test`` (official or carved; None when test_fraction is
        0 and there is no official split) and ``val`` (None when val_fraction is 0).
    """
    from cnnlab.data.dataset import resized, with_splits

    s = parse_spec(spec)
    for key, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= v < 1.0:
            raise DataError(f"{key} must be in [0, 1), got {v}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + "
                        f"{test_fraction}")
    if int(resize) != resize or resize < 0:
        raise DataError(f"resize must be 0 (keep) or a positive side in pixels, got {resize}")
    resize = int(resize)
    entry = _REGISTRY[s.name]
    req = SourceRequest(s.name, s.path, os.fspath(root) if root else None, resize,
                        skip_bad, download, progress)
    ds = entry.load(req)
    if resize and not entry.resizes:
        ds = resized(ds, resize)
    ds.info["spec"] = str(s)
    ds.info["split_seed"] = split_seed
    # carves test (sources without an official one) and val from train, seeded; model
    # selection sees only train/val
    return with_splits(ds, val_fraction, test_fraction, split_seed)
