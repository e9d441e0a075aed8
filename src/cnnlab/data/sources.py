"""Dataset spec strings and ``load_dataset``, the one entry point to every data source.

Specs::

    cifar10, cifar100          official python-format archives (downloaded and verified)
    cifar10:PATH, cifar100:PATH   a local archive or its extracted folder
    mnist, fashion-mnist       official IDX files (downloaded and verified)
    mnist:PATH, fashion-mnist:PATH  a local folder holding the four IDX files
    digits                     scikit-learn's bundled 8x8 digits at 32x32 (offline)
    folder:PATH                an image-folder tree or a .tar/.tar.gz/.tgz/.zip of one
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.cache import cache_dir
from cnnlab.data.dataset import Dataset, ImageSet, with_splits
from cnnlab.errors import DataError

__all__ = ["KNOWN_SPECS", "Spec", "cache_dir", "load_dataset", "parse_spec"]

KNOWN_SPECS = ("cifar10", "cifar100", "mnist", "fashion-mnist", "digits", "folder:PATH")
_NAMES = {"cifar10", "cifar100", "mnist", "fashion-mnist", "digits", "folder"}
_WITH_PATH = {"cifar10", "cifar100", "mnist", "fashion-mnist", "folder"}
_ALIASES = {n.replace("-", ""): n for n in _NAMES}  # "fashionmnist", "cifar-10" -> canonical


@dataclass(frozen=True)
class Spec:
    """A parsed spec string: the source name and the optional local path."""

    name: str
    path: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:{self.path}" if self.path else self.name


def parse_spec(spec: str) -> Spec:
    """Parse "cifar10", "folder:PATH", "mnist:PATH", ...; DataError naming the known specs."""
    text = str(spec).strip()
    head, sep, path = text.partition(":")
    name = _ALIASES.get(head.lower().replace("_", "").replace("-", ""))
    known = ", ".join(KNOWN_SPECS)
    if name is None:
        close = difflib.get_close_matches(head.lower(), sorted(_NAMES), n=1, cutoff=0.6)
        if close:
            hint = f"did you mean '{close[0]}{sep}{path}'? "
        elif not sep and text and Path(text).expanduser().exists():
            hint = f"did you mean 'folder:{text}'? "
        else:
            hint = ""
        raise DataError(f"unknown dataset '{text}'; {hint}known: {known}")
    if sep and name not in _WITH_PATH:
        raise DataError(f"dataset '{name}' takes no path (got '{text}'); known: {known}")
    if sep and not path.strip():
        raise DataError(f"'{text}' lacks the path after ':'; e.g. '{name}:/data/{name}'")
    if name == "folder" and not sep:
        raise DataError("'folder' needs a path: 'folder:PATH' with PATH a folder of class "
                        "subfolders or a .tar, .tar.gz, .tgz or .zip archive of one")
    return Spec(name, path.strip() or None)


def _resized(ds: Dataset, side: int) -> Dataset:
    from cnnlab.data.digits import resize_images

    def one(s: ImageSet | None) -> ImageSet | None:
        return None if s is None else ImageSet(resize_images(s.images, side), s.labels,
                                               s.classes)

    return Dataset(ds.name, one(ds.train), one(ds.test), one(ds.val), ds.official_test,
                   ds.cache_path, {**ds.info, "resize": side})


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
            or "cifar10:PATH" / "mnist:PATH" ... for a local copy of an official dataset.
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
    root = os.fspath(root) if root else None

    if s.name in ("cifar10", "cifar100"):
        from cnnlab.data.cifar import load_cifar

        ds = load_cifar(s.name, root, s.path, download=download, progress=progress)
    elif s.name in ("mnist", "fashion-mnist"):
        from cnnlab.data.mnist import load_idx

        ds = load_idx(s.name, root, s.path, download=download, progress=progress)
    elif s.name == "digits":
        from cnnlab.data.digits import load_digits_dataset

        ds = load_digits_dataset()
    else:
        from cnnlab.data.folder import load_folder

        ds = load_folder(s.path, root, resize=resize, skip_bad=skip_bad, progress=progress)
        resize = 0  # already decoded at that size
    if resize:
        ds = _resized(ds, resize)
    ds.info["spec"] = str(s)
    ds.info["split_seed"] = split_seed
    # carves test (sources without an official one) and val from train, seeded; model
    # selection sees only train/val
    return with_splits(ds, val_fraction, test_fraction, split_seed)
