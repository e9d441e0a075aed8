"""MNIST and Fashion-MNIST from their IDX files (gzipped or not).

The four files (train/t10k images/labels) are downloaded from the standard mirrors into
``<cache>/<name>/``, each checked against its published MD5 before it is renamed into place.
A local copy works too: the spec ``mnist:PATH`` takes a folder holding the four files,
either gzipped (checked against the published MD5s) or uncompressed (the published MD5s
are of the .gz files, so those are checked for a well-formed IDX header and exact size).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.data.sources.cache import cache_dir
from cnnlab.data.sources.download import MIRROR_ENV, check_file, fetch
from cnnlab.data.sources.registry import SourceRequest, register_source
from cnnlab.errors import DataError

if TYPE_CHECKING:
    from cnnlab.data.dataset import Dataset

PARTS = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX dataset comes from and what its files must hash to (published MD5s)."""

    name: str  # spec name, also the cache sub-folder
    urls: tuple[str, ...]  # base URLs (ending in "/"), tried in order
    files: dict[str, tuple[str, str]]  # part -> (file name, md5 of the .gz file)
    classes: tuple[str, ...]


_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# Published checksums of the .gz files; tests replace entries here to serve fixtures.
SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        name="mnist",
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        files={k: (f, md5) for (k, f), md5 in zip(_IDX_FILES.items(), (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))},
        classes=tuple(str(i) for i in range(10)),
    ),
    "fashion-mnist": IdxSource(
        name="fashion-mnist",
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files={k: (f, md5) for (k, f), md5 in zip(_IDX_FILES.items(), (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))},
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
    ),
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) of unsigned bytes into an array of its shape.

    IDX layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions, each
    dimension as a big-endian uint32, then the values.  DataError naming the file when it
    is not well-formed or its size does not match its header (a truncated file).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is corrupt or truncated: {e}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (header "
                        f"{raw[:4].hex() or 'empty'}, expected 0000 08 <ndim>)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header needs {header} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw)} bytes, but its header {shape} needs {expected}"
                        " (truncated or corrupt)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def local_copy_hint(src: IdxSource, where: Path) -> str:
    """How to point cnnlab at a local copy (ends every download error)."""
    files = ", ".join(f for f, _ in src.files.values())
    return (f"To use a local copy: put the four files ({files}) in {where}, or use the spec "
            f"'{src.name}:PATH' (PATH: a folder holding them, gzipped or not), or set --root / "
            f"CNNLAB_HOME to a cache holding {src.name}/, or {MIRROR_ENV} to a mirror's base URL")


def _locate(src: IdxSource, folder: Path) -> dict[str, Path]:
    """The file of each part in a user's folder, gzipped or not."""
    found, missing = {}, []
    for part, (fname, _) in src.files.items():
        raw = fname.removesuffix(".gz")
        # also the dotted names some copies use (t10k-images.idx3-ubyte)
        names = (fname, raw, raw.replace("-idx", ".idx"), raw.replace("-idx", ".idx") + ".gz")
        for n in names:
            if (folder / n).is_file():
                found[part] = folder / n
                break
        else:
            missing.append(fname)
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)} (gzipped or not) for {src.name}")
    for part, p in found.items():
        fname, md5 = src.files[part]
        if p.name.endswith(".gz"):
            check_file(p, md5=md5, what=f"published md5 of {fname}")
    return found


def prepare_idx(name: str, root: str | None = None, path: str | None = None, *,
                download: bool = True, progress: bool | None = None) -> dict[str, Path]:
    """The verified file of each part (see PARTS), downloading what the cache lacks."""
    src = SOURCES[name]
    if path:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise DataError(f"{p} is not a folder; '{name}:PATH' takes a folder holding the "
                            f"four IDX files of {name}")
        return _locate(src, p)
    home = cache_dir(root) / name
    files = {}
    for part, (fname, md5) in src.files.items():
        dest = home / fname
        if dest.is_file():
            check_file(dest, md5=md5, what=f"published md5 of {fname}; delete it to download "
                       "again")
        elif not download:
            raise DataError(f"{name} is not in the cache ({dest} is missing) and download is "
                            f"off. {local_copy_hint(src, home)}")
        else:
            fetch(name, fname, src.urls, dest, md5=md5, progress=progress,
                  hint=local_copy_hint(src, home))
        files[part] = dest
    return files


@register_source("mnist", "fashion-mnist", kind="official", takes_path=True,
                 help="official IDX files, downloaded and verified (MD5)",
                 path_help="a local folder holding the four IDX files (gzipped or not)")
def load_idx(req: SourceRequest) -> Dataset:
    """MNIST / Fashion-MNIST with the official split: uint8 (N, 28, 28, 1), 10 classes."""
    import torch  # here: the registry imports this module to list it, without torch

    from cnnlab.data.dataset import Dataset, ImageSet

    src = SOURCES[req.name]
    files = prepare_idx(req.name, req.root, req.path, download=req.download,
                        progress=req.progress)
    arrays = {part: read_idx(p) for part, p in files.items()}
    splits = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{files[f'{split}_images']} / {files[f'{split}_labels']}: expected images "
                f"(N, H, W) and labels (N,), got {images.shape} and {labels.shape}")
        if len(labels) and labels.max() >= len(src.classes):
            raise DataError(f"{files[f'{split}_labels']}: label {labels.max()} outside "
                            f"0..{len(src.classes) - 1}")
        splits[split] = ImageSet(
            torch.from_numpy(images[..., None].copy()),  # (N, H, W, 1), writable copy
            torch.from_numpy(labels.astype(np.int64)),
            list(src.classes),
        )
    folder = files["train_images"].parent
    return Dataset(req.name, splits["train"], splits["test"], official_test=True,
                   cache_path=str(folder), info={"source": str(folder)})
