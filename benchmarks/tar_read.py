"""Reading a tar archive of images: the standard ``tarfile`` against a hand-written reader.

    python benchmarks/tar_read.py [--archive PATH] [--rounds 3] [--full-rounds 1]

cnnlab reads ``folder:`` archives with ``tarfile`` (``iter_tar`` in
``cnnlab/data/sources/folder.py``).  This script measures, in one process, on the shared
CIFAR-10 archive (50,000 JPEGs in a .tar.gz) by default:

* reading only: the names and bytes of every member, for gzip decompression alone (the
  floor), the lean hand-written reader cnnlab used before (kept below as the reference),
  ``tarfile`` in streaming mode (``r|*``) and ``tarfile`` as cnnlab reads (``r:`` over the
  decompressed stream); best of ``--rounds`` interleaved repeats;
* the first decode that a user waits for: ``cnnlab data info folder:ARCHIVE`` on an empty
  cache (reading, JPEG decoding in the worker pool, the decode-cache write and the summary)
  with each reader, plus the one-off ``import torch`` that the command pays in its own
  process.

It prints the CPU, both times, their ratio and the share of the first decode that the
hand-written reader would save; a hand-written reader is worth keeping only above ~20 %.
The decoded result is cached, so only a first decode reads the archive at all.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cnnlab.cli import main as cli_main
from cnnlab.data.sources import folder

sys.path.insert(0, os.path.dirname(__file__))
import machine  # noqa: E402 - shared by the benchmarks

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train.tar.gz"


def cpu_name() -> str:
    """The CPU model and the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return f"{machine.cpu_name()}, {cores} cores usable"


# -- the reference: the lean sequential reader cnnlab used before tarfile -------------------
# ustar, pax ('x') and GNU long-name ('L') headers over the decompressed stream, one pass

_BLOCK = 512
_READ = 1 << 22  # bytes decompressed per refill


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    out, pos = {}, 0
    while pos < len(data) and data[pos] != 0:
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def hand_iter_tar(path: Path) -> Iterator[tuple[str, bool, bytes | None]]:
    """(name, is_dir, data) of every file and folder, as ``folder.iter_tar`` yields them."""
    with folder._open_stream(path) as stream:
        buf, pos = b"", 0

        def take(n: int) -> bytes:
            nonlocal buf, pos
            if pos + n > len(buf):
                buf = buf[pos:] + stream.read(max(n, _READ))
                pos = 0
                if len(buf) < n:
                    raise EOFError(f"the archive ends inside an entry ({len(buf)} of {n} bytes)")
            out = buf[pos : pos + n]
            pos += n
            return out

        long_name, pax = None, {}
        while True:
            if pos == len(buf):
                buf, pos = stream.read(_READ), 0
                if not buf:
                    return
            header = take(_BLOCK)
            if not header.strip(b"\0"):
                return
            try:
                stored = _number(header[148:156])
            except ValueError:
                stored = -1
            if stored != sum(header) - sum(header[148:156]) + 8 * 32:
                raise ValueError(f"bad tar header checksum at byte {pos - _BLOCK}")
            kind = header[156:157]
            size = _number(header[124:136])
            if "size" in pax and kind not in (b"x", b"g"):
                size = int(pax["size"])
            data = take((size + _BLOCK - 1) // _BLOCK * _BLOCK)[:size] if size else b""
            if kind == b"x":
                pax = _pax(data)
                continue
            if kind == b"L":
                long_name = _text(data)
                continue
            if kind in (b"g", b"K"):
                continue
            name = _text(header[0:100])
            if header[257:263] == b"ustar\0":
                prefix = _text(header[345:500])
                name = f"{prefix}/{name}" if prefix else name
            name = pax.get("path") or long_name or name
            long_name, pax = None, {}
            if kind == b"5" or (kind in (b"0", b"\0") and name.endswith("/")):
                yield name.rstrip("/"), True, None
            elif kind in (b"0", b"\0", b"7"):
                yield name, False, data


# -- the contenders -----------------------------------------------------------------------

def tarfile_stream(path: Path) -> Iterator[tuple[str, bool, bytes | None]]:
    """tarfile's streaming mode: one forward pass, no seeking."""
    with tarfile.open(path, "r|*") as tf:
        for m in tf:
            if m.isdir():
                yield m.name, True, None
            elif m.isfile():
                yield m.name, False, tf.extractfile(m).read()


def gzip_only(path: Path) -> Iterator[tuple[str, bool, bytes | None]]:
    """Decompression alone: what every reader pays before parsing anything."""
    with folder._open_stream(path) as stream:
        while stream.read(_READ):
            pass
    return iter(())


def torch_import_s() -> float:
    """Seconds a fresh process spends importing torch (``cnnlab data info`` pays it once)."""
    def run(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - t

    return max(0.0, min(run("import torch") for _ in range(2)) - min(run("pass") for _ in range(2)))


def read_all(reader: Callable[[Path], Iterator], path: Path) -> tuple[float, int, int]:
    """Seconds to read every member with ``reader``, with the file count and byte count."""
    t = time.perf_counter()
    files = size = 0
    for _, is_dir, data in reader(path):
        if not is_dir:
            files += 1
            size += len(data)
    return time.perf_counter() - t, files, size


def first_decode(path: Path, reader: Callable[[Path], Iterator]) -> float:
    """Seconds of ``cnnlab data info folder:PATH`` on an empty cache, with ``reader``."""
    saved = folder.iter_tar
    folder.iter_tar = reader  # the folder source looks it up at each load
    try:
        with tempfile.TemporaryDirectory() as root, contextlib.redirect_stdout(io.StringIO()):
            t = time.perf_counter()
            rc = cli_main(["data", "info", f"folder:{path}", "--root", root])
            elapsed = time.perf_counter() - t
        if rc != 0:
            raise SystemExit(f"cnnlab data info failed ({rc})")
        return elapsed
    finally:
        folder.iter_tar = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=CIFAR, help="a .tar(.gz) of images")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved read-only repeats")
    parser.add_argument("--full-rounds", type=int, default=1,
                        help="interleaved first decodes per reader (0: skip them)")
    args = parser.parse_args()
    if not args.archive.is_file():
        raise SystemExit(f"{args.archive} is absent; pass --archive PATH")
    print(f"CPU: {cpu_name()}; load average {os.getloadavg()[0]:.2f}")
    print(f"archive: {args.archive} ({args.archive.stat().st_size / 1e6:.1f} MB)")

    readers = {"gzip decompression alone": gzip_only,
               "hand-written reader (reference)": hand_iter_tar,
               "tarfile, r|* streaming": tarfile_stream,
               "tarfile, r: as cnnlab reads (iter_tar)": folder.iter_tar}
    best = dict.fromkeys(readers, float("inf"))
    counts = {}
    for _ in range(args.rounds):
        for name, reader in readers.items():
            s, files, size = read_all(reader, args.archive)
            best[name] = min(best[name], s)
            counts[name] = (files, size)
    files, size = counts["hand-written reader (reference)"]
    assert counts["tarfile, r: as cnnlab reads (iter_tar)"] == (files, size), counts
    print(f"reading only: names and bytes of {files:,} files ({size / 1e6:.1f} MB), "
          f"best of {args.rounds}")
    for name, s in best.items():
        print(f"  {name:<42} {s:6.2f} s")
    hand = best["hand-written reader (reference)"]
    ours = best["tarfile, r: as cnnlab reads (iter_tar)"]
    print(f"  tarfile / hand-written: {ours / hand:.2f}x ({ours - hand:+.2f} s)")

    if args.full_rounds < 1:
        return
    torch_s = torch_import_s()
    full = {"hand-written reader": [], "tarfile (cnnlab)": []}
    for _ in range(args.full_rounds):
        full["hand-written reader"].append(first_decode(args.archive, hand_iter_tar))
        full["tarfile (cnnlab)"].append(first_decode(args.archive, folder.iter_tar))
    print(f"first decode: `cnnlab data info folder:...` on an empty cache, "
          f"{folder._workers()} decode workers, best of {args.full_rounds}, "
          f"+ {torch_s:.2f} s of `import torch`")
    totals = {k: min(v) + torch_s for k, v in full.items()}
    for name, s in totals.items():
        print(f"  {name:<42} {s:6.2f} s")
    hand, ours = totals["hand-written reader"], totals["tarfile (cnnlab)"]
    share = (ours - hand) / ours
    print(f"  tarfile / hand-written: {ours / hand:.2f}x; the hand-written reader would save "
          f"{ours - hand:.2f} s = {share:.0%} of the first decode "
          f"({'above' if share > 0.2 else 'below'} the 20 % that would justify it)")


if __name__ == "__main__":
    main()
