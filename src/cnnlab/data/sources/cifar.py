"""CIFAR-10 and CIFAR-100 from the official python-format archives.

The archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``) is downloaded from
the official URL into ``<cache>/<name>/``, checked against its published MD5, extracted
into a temporary folder, every batch file checked against its published MD5, and only then
renamed to ``<cache>/<name>/<folder>/``: a folder there has been verified whole.

A local copy works too: the spec ``cifar10:PATH`` takes the archive itself, its extracted
folder (``cifar-10-batches-py``) or a folder holding either; the files are verified the
same way.

The batches are Python pickles (the official format).  They are read with a restricted
unpickler that accepts only the numpy array types the format uses, and only after their
checksums matched the published ones.
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.data.sources.cache import cache_dir
from cnnlab.data.sources.download import MIRROR_ENV, check_file, fetch
from cnnlab.data.sources.registry import SourceRequest, register_source
from cnnlab.errors import DataError
from cnnlab.utils.io import fsync_dir

if TYPE_CHECKING:
    from cnnlab.data.dataset import Dataset

_MARKER = "cnnlab-verified.json"  # written into an extracted folder before its rename


@dataclass(frozen=True)
class CifarSource:
    """Where one CIFAR variant comes from and what its files must hash to (published MD5s)."""

    name: str  # spec name, also the cache sub-folder
    archive: str  # archive file name
    urls: tuple[str, ...]  # base URLs (ending in "/") the archive is fetched from
    archive_md5: str
    folder: str  # top folder inside the archive
    train: tuple[tuple[str, str], ...]  # (batch file, md5)
    test: tuple[tuple[str, str], ...]
    meta: tuple[str, str]  # (meta file, md5)
    label_key: str  # key of the labels in a batch
    names_key: str  # key of the class names in the meta file

    def files(self) -> dict[str, str]:
        """Every file the extracted folder must hold, with its MD5."""
        return dict((*self.train, *self.test, self.meta))


# Published checksums: https://www.cs.toronto.edu/~kriz/cifar.html (archives) and the
# per-file figures used across the ecosystem (e.g. torchvision's CIFAR loaders).
# Tests replace entries here to serve synthetic archives through the real code path.
SOURCES: dict[str, CifarSource] = {
    "cifar10": CifarSource(
        name="cifar10",
        archive="cifar-10-python.tar.gz",
        urls=("https://www.cs.toronto.edu/~kriz/",),
        archive_md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train=(
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ),
        test=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
        meta=("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
        label_key="labels",
        names_key="label_names",
    ),
    "cifar100": CifarSource(
        name="cifar100",
        archive="cifar-100-python.tar.gz",
        urls=("https://www.cs.toronto.edu/~kriz/",),
        archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
        test=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
        meta=("meta", "7973b15100ade9c7d40fb424638fde48"),
        label_key="fine_labels",
        names_key="fine_label_names",
    ),
}


# --- restricted unpickling -------------------------------------------------------------

def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def _frombuffer():
    try:
        from numpy._core.numeric import _frombuffer as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.numeric import _frombuffer as fn
    return fn


_ALLOWED = {
    # what a pickled numpy array refers to, under numpy 1.x and 2.x module names
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    # protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1")
    ("_codecs", "encode"): lambda: codecs.encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses anything else."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]()
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_pickle(path: Path) -> dict:
    """Load one CIFAR batch/meta pickle (Python 2 format, so ``encoding="bytes"``) into a
    dict with str keys; DataError naming the file when it cannot be read."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, IndexError) as e:
        raise DataError(f"{path} is not a readable CIFAR pickle: {e}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR pickle: it holds a {type(obj).__name__}, "
                        "expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) of one batch file."""
    d = read_pickle(path)
    if "data" not in d or label_key not in d:
        raise DataError(f"{path} lacks the keys 'data' and '{label_key}' of a CIFAR batch "
                        f"(found {sorted(d)})")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 (N, 3072), got {data.dtype} "
                        f"{data.shape}")
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    # rows are 1024 red, 1024 green, 1024 blue values, each 32x32 row-major -> (N, H, W, C)
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


# --- locating and verifying the files ---------------------------------------------------

def local_copy_hint(src: CifarSource, where: Path) -> str:
    """How to point cnnlab at a local copy (ends every download error)."""
    return (f"To use a local copy: put {src.archive} in {where}, or use the spec "
            f"'{src.name}:PATH' (PATH: the archive or its extracted folder {src.folder}), "
            f"or set --root / CNNLAB_HOME to a cache holding {src.name}/{src.archive}, "
            f"or {MIRROR_ENV} to a mirror's base URL")


def _verify_folder(src: CifarSource, folder: Path) -> None:
    """Check every batch/meta file in ``folder`` against its published MD5."""
    missing = [f for f in src.files() if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder} is not a complete {src.folder} folder: missing "
                        f"{', '.join(missing)}")
    for fname, md5 in src.files().items():
        check_file(folder / fname, md5=md5, what=f"published {src.name} checksum")


def _marker_ok(src: CifarSource, folder: Path) -> bool:
    """True when ``folder`` was extracted and verified by cnnlab against these checksums."""
    try:
        marker = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker == src.files() and all((folder / f).is_file() for f in src.files())


def _extract(src: CifarSource, archive: Path, dest: Path) -> Path:
    """Extract ``archive``'s batch files into a temporary folder, verify, rename to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{src.folder}.extract-", dir=dest.parent))
    wanted = src.files()
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                for member in tf:
                    # only the expected regular files, written under our own names: a hostile
                    # archive cannot write outside tmp (no absolute paths, "..", links)
                    top, _, fname = member.name.lstrip("./").partition("/")
                    if top != src.folder or fname not in wanted or not member.isfile():
                        continue
                    with tf.extractfile(member) as fin, open(tmp / fname, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
                        fout.flush()
                        os.fsync(fout.fileno())
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(f"{archive} is corrupt or truncated ({e})") from None
        missing = [f for f in wanted if not (tmp / f).is_file()]
        if missing:
            raise DataError(f"{archive} lacks {', '.join(f'{src.folder}/{m}' for m in missing)}"
                            f"; it is not the official {src.archive}")
        for fname, md5 in wanted.items():
            check_file(tmp / fname, md5=md5, what=f"extracted from {archive}")
        (tmp / _MARKER).write_text(json.dumps(wanted))
        if dest.exists():  # an unverified leftover (no marker): replace it
            shutil.rmtree(dest)
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def prepare_cifar(name: str, root: str | None = None, path: str | None = None, *,
                  download: bool = True, progress: bool | None = None) -> Path:
    """Make sure a verified extracted folder of ``name`` exists; return it.

    ``path`` (optional) is a local archive, its extracted folder or a folder holding either;
    otherwise the archive is taken from (or downloaded into) ``<cache>/<name>/``.
    """
    src = SOURCES[name]
    home = cache_dir(root) / name
    target = home / src.folder
    archive: Path | None = None
    if path:
        p = Path(path).expanduser()
        if p.is_dir():
            for folder in (p, p / src.folder):
                if (folder / src.meta[0]).is_file():
                    _verify_folder(src, folder)
                    return folder
            if not (p / src.archive).is_file():
                raise DataError(f"{p} holds neither {src.archive} nor its extracted folder "
                                f"{src.folder} (expected {src.meta[0]} and the batch files)")
            archive = p / src.archive
        elif p.is_file():
            archive = p
        else:
            raise DataError(f"{p} does not exist; '{name}:PATH' takes {src.archive} or its "
                            f"extracted folder {src.folder}")
        check_file(archive, md5=src.archive_md5, what=f"published md5 of {src.archive}")
    else:
        if target.is_dir() and _marker_ok(src, target):
            return target
        archive = home / src.archive
        if archive.is_file():
            check_file(archive, md5=src.archive_md5,
                       what=f"published md5 of {src.archive}; delete it to download again")
        elif not download:
            raise DataError(f"{name} is not in the cache ({archive} is missing) and download "
                            f"is off. {local_copy_hint(src, home)}")
        else:
            fetch(name, src.archive, src.urls, archive, md5=src.archive_md5,
                  progress=progress, hint=local_copy_hint(src, home))
    if target.is_dir() and _marker_ok(src, target):
        return target  # the same verified content is already extracted
    return _extract(src, archive, target)


@register_source("cifar10", "cifar100", kind="official", takes_path=True,
                 help="official archives, downloaded and verified (MD5)",
                 path_help="a local cifar-10-python.tar.gz or its extracted folder")
def load_cifar(req: SourceRequest) -> Dataset:
    """CIFAR-10 / CIFAR-100 with the official train/test split (uint8 (N, 32, 32, 3))."""
    import torch  # here: the registry imports this module to list it, without torch

    from cnnlab.data.dataset import Dataset, ImageSet

    name = req.name
    src = SOURCES[name]
    # verified: by its marker (extracted by cnnlab) or file by file (a user's folder)
    folder = prepare_cifar(name, req.root, req.path, download=req.download,
                           progress=req.progress)
    classes = [c.decode() if isinstance(c, bytes) else str(c)
               for c in read_pickle(folder / src.meta[0]).get(src.names_key, [])]
    if not classes:
        raise DataError(f"{folder / src.meta[0]} lacks the class names '{src.names_key}'")

    def split(files: tuple[tuple[str, str], ...]) -> ImageSet:
        parts = [_read_batch(folder / f, src.label_key) for f, _ in files]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(f"{folder}: labels outside 0..{len(classes) - 1}")
        return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), classes)

    return Dataset(
        name, split(src.train), split(src.test), official_test=True, cache_path=str(folder),
        info={"source": str(folder), "archive": src.archive, "url": src.urls[0] + src.archive},
    )
