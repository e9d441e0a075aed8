"""HTTP download with a progress bar, checksum verification and an atomic rename.

A file is streamed into a hidden temporary name beside its destination while its MD5 /
SHA-256 is computed; only when every byte announced has arrived and the checksum matches
is it flushed and renamed into place.  A failed or interrupted download leaves nothing
behind that a later run could mistake for the real file.

Environment:
    CNNLAB_MIRROR            base URL used instead of the official servers; a file is
                             fetched from ``$CNNLAB_MIRROR/<dataset>/<file name>``
                             (``file://`` URLs work too).
    CNNLAB_DOWNLOAD_TIMEOUT  seconds to wait for a connection or for the next bytes (10).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cnnlab import __version__
from cnnlab.data.sources.cache import file_digest, temp_sibling
from cnnlab.errors import DataError
from cnnlab.utils.io import fsync_dir
from cnnlab.utils.progress import progress_enabled

# urllib, http.client and tqdm (~90 ms of imports) are imported by the functions that
# download: the source registry imports this module whenever it lists the sources

MIRROR_ENV = "CNNLAB_MIRROR"
TIMEOUT_ENV = "CNNLAB_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 10.0  # seconds; offline machines fail at name lookup, well before this

_BLOCK = 1 << 16  # bytes per read


def source_urls(dataset: str, filename: str, official: list[str] | tuple[str, ...]) -> list[str]:
    """URLs to try for ``filename``: ``$CNNLAB_MIRROR/<dataset>/<filename>`` if set, else
    each official base URL (ending in "/") followed by ``filename``."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return [f"{mirror.rstrip('/')}/{dataset}/{filename}"]
    return [base + filename for base in official]


def check_file(path: Path, *, md5: str | None = None, sha256: str | None = None,
               what: str = "") -> None:
    """Raise DataError naming ``path`` when its MD5 / SHA-256 differs from the expected one."""
    for algorithm, want in (("md5", md5), ("sha256", sha256)):
        if want:
            got = file_digest(path, algorithm)
            if got != want.lower():
                raise DataError(
                    f"{path} is corrupt or truncated: {algorithm} {got}, expected {want}"
                    + (f" ({what})" if what else "")
                )


def _timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise DataError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


def _reason(e: BaseException) -> str:
    import socket
    import urllib.error

    if isinstance(e, urllib.error.HTTPError):
        return f"the server answered HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else e
        if isinstance(e, str):
            return e
    if isinstance(e, TimeoutError | socket.timeout):
        return "no answer before the timeout: no network?"
    if isinstance(e, socket.gaierror):
        return "cannot resolve the host name: no network?"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused: server down?"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def download(url: str, dest: Path, *, md5: str | None = None, sha256: str | None = None,
             progress: bool | None = None, hint: str = "") -> Path:
    """Download ``url`` to ``dest`` and verify it; returns ``dest``.

    The bytes go to a hidden temporary file beside ``dest`` and are renamed to ``dest``
    only when complete (as many bytes as the server announced) and matching ``md5`` /
    ``sha256``.  Every failure (no network, HTTP error, truncated transfer, wrong
    checksum) raises one DataError naming the URL and ``dest``, followed by ``hint``
    (how to point cnnlab at a local copy).
    """
    import http.client
    import urllib.request

    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tail = f". {hint}" if hint else ""
    tmp = temp_sibling(dest)
    hashes = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    received, total = 0, None
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"cnnlab/{__version__}"})
        try:
            response = urllib.request.urlopen(request, timeout=_timeout())
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise DataError(
                f"cannot download {url} ({_reason(e)}); expected file {dest}{tail}"
            ) from None
        with response, open(tmp, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=dest.name, disable=not progress_enabled(progress), leave=False)
            with bar:
                try:
                    while block := response.read(_BLOCK):
                        out.write(block)
                        for h in hashes.values():
                            h.update(block)
                        received += len(block)
                        bar.update(len(block))
                except http.client.IncompleteRead as e:
                    received += len(e.partial)
                except (OSError, http.client.HTTPException) as e:
                    raise DataError(
                        f"download of {url} failed after {received} bytes: {_reason(e)}; "
                        f"nothing was kept at {dest}{tail}"
                    ) from None
            if total is not None and received < total:
                raise DataError(
                    f"download of {url} was cut off after {received} of {total} bytes "
                    f"(truncated transfer); nothing was kept at {dest}{tail}"
                )
            out.flush()
            os.fsync(out.fileno())
        for algorithm, want in (("md5", md5), ("sha256", sha256)):
            got = hashes[algorithm].hexdigest()
            if want and got != want.lower():
                raise DataError(
                    f"{dest.name} downloaded from {url} is corrupt: {algorithm} {got}, expected "
                    f"{want}; nothing was kept at {dest}{tail}"
                )
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def fetch(dataset: str, filename: str, official: list[str] | tuple[str, ...], dest: Path, *,
          md5: str | None = None, sha256: str | None = None, progress: bool | None = None,
          hint: str = "") -> Path:
    """Download ``filename`` of ``dataset`` to ``dest`` from the first URL that works
    (see ``source_urls``); the error of the first URL is the one reported."""
    urls = source_urls(dataset, filename, official)
    first: DataError | None = None
    for url in urls:
        try:
            return download(url, dest, md5=md5, sha256=sha256, progress=progress, hint=hint)
        except DataError as e:
            first = first or e
    if len(urls) > 1:
        raise DataError(f"{first} (also tried {', '.join(urls[1:])})")
    assert first is not None
    raise first
