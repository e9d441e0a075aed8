"""Image-folder trees (a directory, or a .tar / .tar.gz / .tgz / .zip holding one).

Layout: one subfolder per class (``cat/0001.jpg``, images may sit deeper inside a class
folder).  When the tree holds ``train/`` and ``test/`` subtrees (any case) they are the
official split; a ``val/`` subtree beside them is ignored with a warning (cnnlab carves
validation from train, seeded).  A single wrapper folder around the tree is looked through,
so an archive of ``train/<class>/...`` alone, or ``mydata/<class>/...``, works as is.
Hidden files and folders (``.name``, ``__MACOSX``) and files that are not images (by
extension) are ignored.

Every image is decoded once with Pillow, converted to RGB (grayscale, RGBA, palette...;
alpha is dropped) and, if ``resize`` is given, resized to ``resize`` x ``resize``
(bilinear, aspect ratio not kept).  The result is stored in the decode cache
(``cache.py``) under a key of the content and the options:

- an archive: the SHA-256 of its bytes, so a renamed or copied archive still hits;
- a directory: the SHA-256 of its sorted listing (relative path, size, mtime of every
  file); hashing 50,000 files' bytes would cost as much as decoding them, and an edit
  changes a size or an mtime in practice.

Decoding runs in a pool of forked worker processes (Linux) while the main process reads
the archive in one sequential pass (``iter_tar``, through the standard ``tarfile``); the
decoded arrays are saved as .npy files, so a second load only hashes the archive and maps
the arrays back.

Pillow, tqdm, multiprocessing and torch are imported by the functions that decode: the
source registry imports this module whenever it lists the sources.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import posixpath
import sys
import tarfile
import warnings
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from cnnlab.data.sources.cache import (
    CACHE_VERSION,
    Decoded,
    decoded_path,
    file_digest,
    load_decoded,
    store_decoded,
    text_key,
)
from cnnlab.data.sources.registry import SourceRequest, register_source
from cnnlab.errors import DataError
from cnnlab.utils.progress import progress_enabled

if TYPE_CHECKING:
    from PIL import Image

    from cnnlab.data.dataset import Dataset

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                        ".ppm", ".pgm", ".pbm", ".pnm"})
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
SPLIT_NAMES = ("train", "test")
VAL_NAMES = frozenset({"val", "valid", "validation"})
WORKERS_ENV = "CNNLAB_DECODE_WORKERS"  # decode processes; 0 or 1 decodes in-process

CHUNK = 256  # images per worker task: big enough to amortize the pickling round trip
POOL_MIN = 2000  # fewer images decode in-process: starting a pool would cost more
MAX_LISTED = 5  # unreadable files named in an error message


@dataclass(frozen=True)
class _ReadError:
    """Payload standing for an archive member whose bytes could not be read."""

    message: str


Payload = bytes | str | _ReadError  # image bytes, a file path to read, or a read error


# --- decoding (runs in worker processes) ------------------------------------------------

# Pillow tries only this format first (a file named .jpg is nearly always a JPEG), which
# skips probing the other formats: ~10 % of the decode time of a small image
_FORMAT_HINTS = {".jpg": ("JPEG",), ".jpeg": ("JPEG",), ".png": ("PNG",)}


def _open(data: bytes, name: str) -> Image.Image:
    from PIL import Image

    hint = _FORMAT_HINTS.get(posixpath.splitext(name)[1].lower())
    if hint:
        try:
            return Image.open(io.BytesIO(data), formats=hint)
        except Image.UnidentifiedImageError:
            pass  # misnamed: let Pillow probe every format
    return Image.open(io.BytesIO(data))


def _decode_rgb(payload: Payload, resize: int, name: str) -> Image.Image | str:
    """Decode one image to an RGB Pillow image; on failure the reason as a string."""
    from PIL import Image  # cheap once imported (a sys.modules lookup per image)

    if isinstance(payload, _ReadError):
        return payload.message
    data = b""
    try:
        data = payload if isinstance(payload, bytes) else Path(payload).read_bytes()
        im = _open(data, name)
        if im.mode != "RGB":
            if im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")  # palette transparency: go through RGBA cleanly
            im = im.convert("RGB")  # L, LA, RGBA, P, CMYK, I;16 ... -> RGB (alpha dropped)
        else:
            im.load()  # decode now, so a truncated file fails here
        if resize:
            im = im.resize((resize, resize), Image.Resampling.BILINEAR)
        return im
    except Image.UnidentifiedImageError:
        return "empty file" if not data else "not an image format Pillow can read"
    except Exception as e:  # noqa: BLE001 - any failure of a decoder means "unreadable file"
        return f"{type(e).__name__}: {e}".strip().rstrip(":")


def decode_image(payload: Payload, resize: int = 0, name: str = "") -> np.ndarray | str:
    """Decode one image (bytes or a file path) to uint8 (H, W, 3) RGB; on failure the
    reason as a string.  ``name`` (its file name) only hints at the format."""
    im = _decode_rgb(payload, resize, name)
    if isinstance(im, str):
        return im
    return np.frombuffer(im.tobytes(), np.uint8).reshape(im.height, im.width, 3)


def _decode_chunk(items: list[tuple[str, Payload]], resize: int) -> tuple[list, bytes]:
    """Decode a chunk; returns per image (H, W) or an error string, and all pixels joined
    in one buffer (one pickle instead of hundreds of small arrays)."""
    meta, parts = [], []
    for name, payload in items:
        im = _decode_rgb(payload, resize, name)
        if isinstance(im, str):
            meta.append(im)
        else:
            meta.append((im.height, im.width))
            parts.append(im.tobytes())  # (H, W, 3) row-major
    return meta, b"".join(parts)


def _split_chunk(meta: list, buffer: bytes) -> list[np.ndarray | str]:
    flat = np.frombuffer(buffer, np.uint8)
    out, offset = [], 0
    for m in meta:
        if isinstance(m, str):
            out.append(m)
        else:
            n = m[0] * m[1] * 3
            out.append(flat[offset : offset + n].reshape(m[0], m[1], 3))
            offset += n
    return out


def _workers() -> int:
    raw = os.environ.get(WORKERS_ENV, "")
    if raw:
        try:
            return max(int(raw), 1)
        except ValueError:
            raise DataError(f"{WORKERS_ENV}={raw!r} is not a whole number") from None
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return min(n, 8)


def _decode_all(reader: _Reader, resize: int, progress: bool | None
                ) -> tuple[list[str], list[np.ndarray | str]]:
    """Decode every image of ``reader``; returns the names and, per name, the array or
    the reason it could not be read."""
    import multiprocessing

    from tqdm import tqdm

    names: list[str] = []
    results: list[np.ndarray | str] = []
    workers = _workers()
    items = reader.items()
    head = list(islice(items, POOL_MIN))
    total = reader.total  # known for folders and zips once listing started; None for tar
    # fork (Linux only) starts workers in milliseconds; elsewhere a fresh interpreter per
    # worker would cost seconds of imports, so decode in-process there
    # a daemonic process (e.g. a pool worker running a sweep) may not start children
    use_pool = (workers > 1 and len(head) >= POOL_MIN and sys.platform.startswith("linux")
                and not multiprocessing.current_process().daemon)
    bar = tqdm(total=total, unit="img", desc="decoding", disable=not progress_enabled(progress),
               leave=False)
    with bar:
        if not use_pool:
            for name, payload in (*head, *items):
                names.append(name)
                results.append(decode_image(payload, resize, name))
                bar.update()
            return names, results

        def chunks() -> Iterator[list[tuple[str, Payload]]]:
            for i in range(0, len(head), CHUNK):
                yield head[i : i + CHUNK]
            while chunk := list(islice(items, CHUNK)):
                yield chunk

        with warnings.catch_warnings():
            # Python 3.12 warns on fork() in a threaded process (torch's thread pools);
            # the workers only run Pillow on bytes and never touch torch, so it is safe
            warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead",
                                    category=DeprecationWarning)
            pool = multiprocessing.get_context("fork").Pool(workers)
        with pool:
            pending: deque = deque()

            def collect() -> None:
                got = _split_chunk(*pending.popleft().get())
                results.extend(got)
                bar.update(len(got))

            # the main process reads the source while the workers decode; at most a few
            # chunks wait per worker, so memory stays bounded
            for chunk in chunks():
                names.extend(n for n, _ in chunk)
                pending.append(pool.apply_async(_decode_chunk, (chunk, resize)))
                while len(pending) > 3 * workers:
                    collect()
            while pending:
                collect()
    return names, results


# --- reading a directory or an archive ----------------------------------------------------

def _hidden(rel: str) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in rel.split("/"))


def _is_image(rel: str) -> bool:
    return posixpath.splitext(rel)[1].lower() in IMAGE_EXTS


def _clean(name: str) -> str | None:
    """A member name as a relative posix path, or None for names to ignore."""
    rel = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
    if rel in ("", ".") or rel.startswith("../") or rel == ".." or _hidden(rel):
        return None
    return rel


def _parents(rel: str) -> Iterator[str]:
    parts = rel.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def archive_kind(path: Path) -> str:
    """"dir", "tar" or "zip"; DataError for anything else."""
    if path.is_dir():
        return "dir"
    if not path.exists():
        raise DataError(f"{path} does not exist; 'folder:PATH' takes a folder of class "
                        "subfolders or a .tar, .tar.gz, .tgz or .zip archive of one")
    lower = path.name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(ARCHIVE_SUFFIXES):
        return "tar"
    raise DataError(f"{path} is neither a folder nor a .tar, .tar.gz, .tgz or .zip archive")


class _Reader:
    """Lists and reads the files of a directory or an archive.

    ``items()`` yields (relative name, payload) for every image file; afterwards ``dirs``
    holds every folder seen (explicit entries and parents of any file) and ``ignored`` the
    number of non-image files.
    """

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self.dirs: set[str] = set()
        self.ignored = 0
        self.total: int | None = None
        self._listing: list[tuple[str, int, int]] | None = None
        self._members: list[str] | None = None  # image names of a dir / zip, once scanned
        self._zip_names: dict[str, str] = {}  # cleaned name -> name inside the zip

    def listing(self) -> list[tuple[str, int, int]]:
        """(relative path, size, mtime_ns) of every non-hidden file of a directory, sorted."""
        if self._listing is None:
            out = []
            for dirpath, dirnames, filenames in os.walk(self.path):
                dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
                rel_dir = os.path.relpath(dirpath, self.path).replace(os.sep, "/")
                if rel_dir != ".":
                    self.dirs.add(rel_dir)
                for f in filenames:
                    if _hidden(f):
                        continue
                    rel = f if rel_dir == "." else f"{rel_dir}/{f}"
                    st = os.stat(os.path.join(dirpath, f))
                    out.append((rel, st.st_size, st.st_mtime_ns))
            self._listing = sorted(out)
        return self._listing

    def content_hash(self) -> str:
        """SHA-256 of the archive bytes, or of the directory's listing (see module doc)."""
        if self.kind == "dir":
            return text_key(self.listing())
        return file_digest(self.path, "sha256")

    def _note(self, rel: str, is_dir: bool) -> bool:
        """Record folders; True when ``rel`` is an image file to decode."""
        self.dirs.update(_parents(rel))
        if is_dir:
            self.dirs.add(rel)
            return False
        if _is_image(rel):
            return True
        self.ignored += 1
        return False

    def scan(self) -> list[str] | None:
        """Names of the image files of a directory or zip, listed without reading them
        (fills ``dirs``, ``ignored`` and ``total``); None for a tar, which must be read
        through to be listed."""
        if self._members is None and self.kind == "dir":
            self._members = [rel for rel, _, _ in self.listing() if self._note(rel, False)]
        elif self._members is None and self.kind == "zip":
            try:
                with zipfile.ZipFile(self.path) as zf:
                    infos = zf.infolist()
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{self.path} is not a readable zip archive ({e})") from None
            self._zip_names = {}
            for info in infos:
                rel = _clean(info.filename)
                if rel is not None and self._note(rel, info.is_dir()):
                    self._zip_names[rel] = info.filename
            self._members = list(self._zip_names)
        if self._members is not None:
            self.total = len(self._members)
        return self._members

    def items(self) -> Iterator[tuple[str, Payload]]:
        """(relative name, payload) of every image file, in listing order."""
        if self.kind == "tar":
            yield from self._tar_items()
            return
        names = self.scan() or []
        if self.kind == "dir":
            for rel in names:
                yield rel, str(self.path / rel)
            return
        with zipfile.ZipFile(self.path) as zf:
            for rel in names:
                try:
                    payload: Payload = zf.read(self._zip_names[rel])
                except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
                    payload = _ReadError(f"cannot read it from the archive: {e}")
                yield rel, payload

    def _tar_items(self) -> Iterator[tuple[str, Payload]]:
        try:
            for name, is_dir, data in iter_tar(self.path):
                rel = _clean(name)
                if rel is not None and self._note(rel, is_dir):
                    yield rel, data
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError) as e:
            raise DataError(f"{self.path} is corrupt or truncated ({e})") from None


# --- reading a tar archive --------------------------------------------------------------
# The standard tarfile, in one forward pass over the decompressed stream.  A hand-written
# reader parses CIFAR-10's 50,000 headers ~1 s faster (0.4 s against 1.4 s on a 2-core
# CPU), but the main process reads while the workers decode: the first decode took 0-10 %
# longer with tarfile (benchmarks/tar_read.py), too little to keep a tar parser of our own.

_BLOCK = 512  # tar block size, bytes
_READ = 1 << 20  # bytes per read when draining the stream


def _open_stream(path: Path) -> BinaryIO:
    """The archive's decompressed byte stream (gzip, bzip2, xz or plain, by magic bytes)."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if head[:3] == b"BZh":
        return bz2.open(path, "rb")
    if head[:6] == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb")
    return open(path, "rb")


def _header_error(block: bytes, offset: int) -> Exception:
    """Why the block at byte ``offset`` of the stream is not a tar header."""
    if len(block) < _BLOCK:
        return EOFError(f"the archive ends inside an entry ({len(block)} of {_BLOCK} bytes)")
    try:  # checksum: sum of the header bytes with its own field read as spaces
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        stored = -1
    if stored != sum(block) - sum(block[148:156]) + 8 * 32:
        return ValueError(f"bad tar header checksum at byte {offset} "
                          "(not a tar archive, or a damaged one)")
    return ValueError(f"unreadable tar header at byte {offset}")


def iter_tar(path: Path) -> Iterator[tuple[str, bool, bytes | None]]:
    """Yield (name, is_dir, data) for the files and folders of a tar archive, in order.

    ``data`` is the file's bytes (None for folders); links, devices and other entries are
    skipped.  Raises tarfile.TarError, ValueError or EOFError on a corrupt or truncated
    archive (and what the decompressor raises on a damaged stream).
    """
    with _open_stream(path) as stream:
        try:
            tf = tarfile.open(fileobj=stream, mode="r:")
        except tarfile.ReadError:
            stream.seek(0)
            block = stream.read(_BLOCK)
            if not block:
                return  # an empty file: an archive without members
            raise _header_error(block, 0) from None
        with tf:
            for member in tf:
                if member.isdir():
                    yield member.name, True, None
                elif member.isfile():
                    with tf.extractfile(member) as f:
                        data = f.read()
                    yield member.name, False, data
            # tarfile ends quietly at the first block it cannot read as a header: that must
            # be the end-of-archive block (zeros) or the end of the stream, as for tar
            end = tf.offset  # where the next header would start
            stream.seek(end)
            block = stream.read(_BLOCK)
            if block and (len(block) < _BLOCK or block.strip(b"\0")):
                raise _header_error(block, end)
            while stream.read(_READ):  # to the end: a compressed stream checks its CRC
                pass


# --- layout: splits and classes from the paths ------------------------------------------

def _children(prefix: str, names: list[str], dirs: set[str]) -> set[str]:
    """First path components below ``prefix`` ("" or "a/b/") among images and folders."""
    out = set()
    for n in (*names, *dirs):
        if n.startswith(prefix) and len(n) > len(prefix):
            out.add(n[len(prefix):].split("/")[0])
    return out


def _classes_at(prefix: str, names: list[str], dirs: set[str], where: str
                ) -> tuple[dict[str, list[int]], list[int]]:
    """Class folder -> indices of its images (recursively), and images lying directly at
    ``prefix`` (outside any class folder).  DataError for an empty class folder."""
    by_class: dict[str, list[int]] = {c: [] for c in _children(prefix, [], dirs)}
    loose = []
    for i, n in enumerate(names):
        if not n.startswith(prefix):
            continue
        rest = n[len(prefix):]
        if "/" in rest:
            by_class.setdefault(rest.split("/")[0], []).append(i)
        else:
            loose.append(i)
    empty = sorted(c for c, idx in by_class.items() if not idx)
    if empty:
        raise DataError(f"class folder '{prefix}{empty[0]}' in {where} has no images"
                        + (f" (nor {', '.join(empty[1:4])})" if len(empty) > 1 else "")
                        + f"; expected image files ({', '.join(sorted(IMAGE_EXTS)[:4])}, ...)"
                        " in every class folder, or remove the empty folder")
    return by_class, loose


@dataclass
class Layout:
    """Where each image belongs: per split, class name -> indices into the names."""

    splits: dict[str, dict[str, list[int]]]
    classes: list[str]
    official_test: bool
    prefix: str  # wrapper folder(s) looked through, "" if none
    loose: list[int]  # images outside any class folder (ignored)
    val_ignored: int  # images of a val/ subtree (ignored)


def layout(names: list[str], dirs: set[str], where: str) -> Layout:
    """Find the class folders (and train/test subtrees) from the image paths."""
    if not names:
        raise DataError(f"no images found in {where}; expected one subfolder per class holding "
                        f"image files ({', '.join(sorted(IMAGE_EXTS))})")
    prefix = ""
    while True:
        rel = [n[len(prefix):] for n in names]
        tops = _children(prefix, names, dirs)
        lower = {t.lower(): t for t in tops}
        deep = all(r.count("/") >= 2 for r in rel)  # every image at split/class/file or deeper
        if deep and "train" in lower and len(tops) >= 2 and set(lower) <= {*SPLIT_NAMES,
                                                                            *VAL_NAMES}:
            return _split_layout(prefix, lower, names, dirs, where)
        if deep and len(tops) == 1:  # a wrapper folder (or a lone train/): look through it
            prefix += next(iter(tops)) + "/"
            continue
        break
    by_class, loose = _classes_at(prefix, names, dirs, where)
    if not by_class:
        raise DataError(f"the images in {where} lie directly in "
                        f"{'/' + prefix if prefix else 'it'}; expected one subfolder per class")
    classes = sorted(by_class)
    _check_class_count(classes, where)
    return Layout({"train": by_class}, classes, False, prefix, loose, 0)


def _split_layout(prefix: str, lower: dict[str, str], names: list[str], dirs: set[str],
                  where: str) -> Layout:
    splits, loose = {}, []
    for split in SPLIT_NAMES:
        if split in lower:
            by_class, extra = _classes_at(f"{prefix}{lower[split]}/", names, dirs, where)
            splits[split] = by_class
            loose += extra
    val_ignored = sum(1 for n in names for v in VAL_NAMES
                      if v in lower and n.startswith(f"{prefix}{lower[v]}/"))
    classes = sorted(splits["train"])
    _check_class_count(classes, where)
    unknown = sorted(set(splits.get("test", {})) - set(classes))
    if unknown:
        raise DataError(f"test class folder '{unknown[0]}' in {where} has no matching train "
                        f"folder; train classes are {', '.join(classes)}")
    return Layout(splits, classes, "test" in splits, prefix, loose, val_ignored)


def _check_class_count(classes: list[str], where: str) -> None:
    if len(classes) < 2:
        raise DataError(f"{where} holds {len(classes)} class folder ({', '.join(classes)}); "
                        "a classifier needs at least 2: one subfolder per class")


# --- putting it together ------------------------------------------------------------------

def _bad_files(bad: list[tuple[str, str]], where: str) -> str:
    shown = "; ".join(f"{n} ({why})" for n, why in bad[:MAX_LISTED])
    more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return f"{len(bad)} unreadable image file(s) in {where}: {shown}{more}"


def _assemble(path: Path, names: list[str], results: list[np.ndarray | str], lay: Layout,
              skip_bad: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays per split ({split}_images (N, H, W, 3), {split}_labels (N,)) and the skipped."""
    used = sorted(i for by_class in lay.splits.values() for idx in by_class.values()
                  for i in idx)
    bad = [(names[i], results[i]) for i in used if isinstance(results[i], str)]
    if bad and not skip_bad:
        raise DataError(_bad_files(bad, str(path)) + "; fix or remove them, or pass --skip-bad "
                        "(skip_bad=True) to leave them out")
    if bad:
        warnings.warn(_bad_files(bad, str(path)) + " were skipped", stacklevel=4)
    good = [i for i in used if not isinstance(results[i], str)]
    if not good:
        raise DataError(f"none of the images in {path} could be read")
    first = good[0]
    h, w = results[first].shape[:2]
    for i in good:
        if results[i].shape[:2] != (h, w):
            hh, ww = results[i].shape[:2]
            raise DataError(
                f"images differ in size: {names[first]} is {w}x{h} but {names[i]} is {ww}x{hh} "
                f"(in {path}); pass --resize N (resize=N) to resize every image to NxN")
    arrays = {}
    for split, by_class in lay.splits.items():
        images, labels = [], []
        for label, cls in enumerate(lay.classes):
            # sorted by path: the order never depends on how the archive was written
            idx = sorted((i for i in by_class.get(cls, [])
                          if not isinstance(results[i], str)), key=names.__getitem__)
            if not idx and cls in by_class:
                raise DataError(f"class folder '{cls}' ({split}) in {path} has no readable "
                                "images")
            images += [results[i] for i in idx]
            labels += [label] * len(idx)
        arrays[f"{split}_images"] = (np.stack(images) if images
                                     else np.zeros((0, h, w, 3), np.uint8))
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
    return arrays, [n for n, _ in bad]


def dataset_name(path: Path) -> str:
    """A short name for a folder source: the folder or archive name without its suffix."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name or str(path)


@register_source(
    "folder", kind="files", needs_path=True, resizes=True,
    help="one subfolder per class (or train/ and test/ subtrees), a directory or a .tar, "
         ".tar.gz, .tgz or .zip of one",
    path_help="a folder of class subfolders or a .tar, .tar.gz, .tgz or .zip archive of one")
def load_folder(req: SourceRequest) -> Dataset:
    """Load an image-folder tree or archive through the decode cache (see module doc).

    Returns the train split and, when the tree has ``train/`` and ``test/`` subtrees, the
    official test split; uint8 (N, H, W, 3) RGB images at ``req.resize`` (0: as stored),
    labels indexing sorted class names.
    """
    import torch

    from cnnlab.data.dataset import Dataset, ImageSet

    root, resize, skip_bad, progress = req.root, req.resize, req.skip_bad, req.progress
    p = Path(req.path).expanduser().resolve()
    kind = archive_kind(p)
    reader = _Reader(p, kind)
    key = text_key(CACHE_VERSION, "folder", kind, reader.content_hash(), int(resize),
                   bool(skip_bad))
    name = dataset_name(p)
    entry = decoded_path(root, f"folder-{name}", key)
    cached = load_decoded(entry)
    if cached is None:
        listed = reader.scan()
        if listed is not None:  # a folder or zip: check the layout before decoding anything
            layout(listed, reader.dirs, str(p))
        names, results = _decode_all(reader, resize, progress)
        lay = layout(names, reader.dirs, str(p))
        arrays, skipped = _assemble(p, names, results, lay, skip_bad)
        meta = {
            "source": str(p), "kind": kind, "classes": lay.classes,
            "official_test": lay.official_test, "wrapper": lay.prefix.rstrip("/"),
            "skipped": skipped, "ignored_files": reader.ignored + len(lay.loose),
            "ignored_val": lay.val_ignored, "resize": int(resize),
        }
        if lay.val_ignored:
            warnings.warn(f"{p}: the {lay.val_ignored} images of the validation subtree are "
                          "ignored; cnnlab carves validation from train (val_fraction)",
                          stacklevel=3)
        store_decoded(entry, arrays, meta)
        cached = Decoded(entry, arrays, meta)
    meta, arrays = cached.meta, cached.arrays
    classes = list(meta["classes"])
    sets = {split: ImageSet(torch.from_numpy(arrays[f"{split}_images"]),
                            torch.from_numpy(arrays[f"{split}_labels"]), classes)
            for split in ("train", "test") if f"{split}_images" in arrays}
    info = {k: meta[k] for k in ("source", "kind", "wrapper", "skipped", "ignored_files",
                                 "ignored_val", "resize")}
    return Dataset(name, sets["train"], sets.get("test"), official_test=meta["official_test"],
                   cache_path=str(entry), info=info)
