"""CIFAR sources against synthetic archives in the official python format.

The fixture archives have the real structure (cifar-10-batches-py/data_batch_1..5,
test_batch, batches.meta; cifar-100-python/train, test, meta); their checksums are computed
and injected into ``cifar.SOURCES`` so the verification code is the real one.  Downloads
are served by a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import load_dataset
from cnnlab.data.sources import cifar
from cnnlab.errors import DataError

N = 4  # images per batch file
C10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _pickle(obj: dict) -> bytes:
    # protocol 2 with the numpy 1.x module name, like the official Python 2 files
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray",
                                                 b"numpy.core.multiarray")


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def make_cifar(tmp: Path, name: str = "cifar10") -> tuple[Path, cifar.CifarSource, dict]:
    """Write a fixture archive; return it, the source with its checksums, and the arrays."""
    rng = np.random.default_rng(0)
    src = cifar.SOURCES[name]
    files, arrays = {}, {}
    n_classes = 10 if name == "cifar10" else 100
    for fname, _ in (*src.train, *src.test):
        data = rng.integers(0, 256, (N, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, n_classes, N)]
        batch = {b"batch_label": fname.encode(), b"data": data,
                 b"filenames": [f"{i}.png".encode() for i in range(N)]}
        if name == "cifar10":
            batch[b"labels"] = labels
        else:
            batch[b"fine_labels"] = labels
            batch[b"coarse_labels"] = [x // 5 for x in labels]
        files[fname] = _pickle(batch)
        arrays[fname] = (data, labels)
    if name == "cifar10":
        meta = {b"label_names": [c.encode() for c in C10], b"num_cases_per_batch": N}
    else:
        meta = {b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)],
                b"coarse_label_names": [f"super{i:02d}".encode() for i in range(20)]}
    files[src.meta[0]] = _pickle(meta)
    archive = tmp / src.archive
    with tarfile.open(archive, "w:gz") as tf:
        for fname, content in {**files, "readme.html": b"<html></html>"}.items():
            info = tarfile.TarInfo(f"{src.folder}/{fname}")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    md5 = {f: _md5(b) for f, b in files.items()}
    fixture = dataclasses.replace(
        src,
        archive_md5=_md5(archive.read_bytes()),
        train=tuple((f, md5[f]) for f, _ in src.train),
        test=tuple((f, md5[f]) for f, _ in src.test),
        meta=(src.meta[0], md5[src.meta[0]]),
        urls=("http://127.0.0.1:9/",),  # never the real server from a test
    )
    return archive, fixture, arrays


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("CNNLAB_HOME", str(h))
    monkeypatch.delenv("CNNLAB_MIRROR", raising=False)
    return h


@pytest.fixture
def c10(tmp_path, monkeypatch):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    archive, fixture, arrays = make_cifar(src_dir)
    monkeypatch.setitem(cifar.SOURCES, "cifar10", fixture)
    return archive, fixture, arrays


def _expected(arrays: dict, files) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([arrays[f][0] for f, _ in files])
    labels = np.concatenate([arrays[f][1] for f, _ in files])
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _check_c10(ds, fixture, arrays):
    assert ds.official_test and ds.classes == C10
    assert ds.train.images.shape == (5 * N, 32, 32, 3) and ds.test.images.shape == (N, 32, 32, 3)
    x, y = _expected(arrays, fixture.train)
    np.testing.assert_array_equal(ds.train.images.numpy(), x)
    np.testing.assert_array_equal(ds.train.labels.numpy(), y)
    x, y = _expected(arrays, fixture.test)
    np.testing.assert_array_equal(ds.test.images.numpy(), x)


# --- local copies -------------------------------------------------------------------------

def test_local_archive_is_verified_extracted_and_loaded(home, c10):
    archive, fixture, arrays = c10
    ds = load_dataset(f"cifar10:{archive}", progress=False)
    _check_c10(ds, fixture, arrays)
    extracted = home / "cifar10" / fixture.folder
    assert ds.cache_path == str(extracted) and (extracted / "test_batch").is_file()
    assert not [p for p in extracted.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_extracted_folder_and_folder_holding_the_archive(home, c10, tmp_path):
    archive, fixture, arrays = c10
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    for path in (tmp_path / "x" / fixture.folder, tmp_path / "x", archive.parent):
        _check_c10(load_dataset(f"cifar10:{path}"), fixture, arrays)


def test_val_split_is_carved_from_train_only(home, c10):
    archive, _, _ = c10
    ds = load_dataset(f"cifar10:{archive}", val_fraction=0.25, test_fraction=0.5)
    assert len(ds.test) == N  # the official test split, untouched by test_fraction
    assert len(ds.train) + len(ds.val) == 5 * N and len(ds.val) > 0


def test_cifar100(home, tmp_path, monkeypatch):
    archive, fixture, arrays = make_cifar(tmp_path, "cifar100")
    monkeypatch.setitem(cifar.SOURCES, "cifar100", fixture)
    ds = load_dataset(f"cifar100:{archive}")
    assert ds.num_classes == 100 and ds.classes[3] == "class03"
    assert len(ds.train) == N and len(ds.test) == N
    np.testing.assert_array_equal(ds.train.labels.numpy(), arrays["train"][1])


def test_corrupt_batch_file_is_named(home, c10, tmp_path):
    archive, fixture, _ = c10
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    batch = tmp_path / "x" / fixture.folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-10])  # truncated
    with pytest.raises(DataError, match=r"data_batch_3 is corrupt or truncated: md5"):
        load_dataset(f"cifar10:{tmp_path / 'x'}")


def test_truncated_archive_is_named_and_nothing_is_kept(home, c10, tmp_path):
    archive, fixture, _ = c10
    bad = tmp_path / "cut" / fixture.archive
    bad.parent.mkdir()
    bad.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(DataError, match=f"{bad} is corrupt or truncated: md5"):
        load_dataset(f"cifar10:{bad}")
    # the same bytes with a matching checksum: tar itself fails, still naming the file
    cifar.SOURCES["cifar10"] = dataclasses.replace(fixture, archive_md5=_md5(bad.read_bytes()))
    with pytest.raises(DataError, match=f"{bad} is corrupt or truncated"):
        load_dataset(f"cifar10:{bad}")
    assert not (home / "cifar10" / fixture.folder).exists()
    assert not list((home / "cifar10").glob(".*"))  # no half-extracted folder left


def test_unverified_leftover_is_not_trusted(home, c10):
    archive, fixture, arrays = c10
    stale = home / "cifar10" / fixture.folder
    stale.mkdir(parents=True)
    (stale / "data_batch_1").write_bytes(b"half written")  # no marker: not cnnlab's
    (home / "cifar10" / fixture.archive).write_bytes(archive.read_bytes())
    _check_c10(load_dataset("cifar10", download=False), fixture, arrays)


def test_missing_without_download(home, c10):
    with pytest.raises(DataError, match=r"not in the cache .*cifar10:PATH"):
        load_dataset("cifar10", download=False)


def test_restricted_unpickler_refuses_code(tmp_path):
    evil = tmp_path / "data_batch_1"

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil.write_bytes(pickle.dumps({"data": Boom()}, protocol=2))
    with pytest.raises(DataError, match="refusing to load"):
        cifar.read_pickle(evil)


# --- downloads from a local HTTP server ----------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # a truncated transfer: announce the whole body, send half, close
        self.wfile.write(body[: len(body) // 2] if self.server.truncate else body)
        self.server.hits += 1

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(files: dict[str, bytes], truncate: bool = False):
    """Serve ``files`` ({url path: bytes}) on 127.0.0.1; yields the base URL."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.truncate, srv.hits = files, truncate, 0
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/", srv
    finally:
        srv.shutdown()
        srv.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_success_then_cache_reuse(home, c10):
    archive, fixture, arrays = c10
    with serve({f"/kriz/{fixture.archive}": archive.read_bytes()}) as (base, srv):
        cifar.SOURCES["cifar10"] = dataclasses.replace(fixture, urls=(base + "kriz/",))
        _check_c10(load_dataset("cifar10", progress=False), fixture, arrays)
        assert srv.hits == 1
    assert (home / "cifar10" / fixture.archive).is_file()
    _check_c10(load_dataset("cifar10"), fixture, arrays)  # server gone: from the cache


def test_download_through_mirror_env(home, c10, monkeypatch):
    archive, fixture, arrays = c10
    with serve({f"/m/cifar10/{fixture.archive}": archive.read_bytes()}) as (base, _):
        monkeypatch.setenv("CNNLAB_MIRROR", base + "m")
        _check_c10(load_dataset("cifar10"), fixture, arrays)


def test_download_wrong_checksum(home, c10):
    archive, fixture, _ = c10
    with serve({f"/{fixture.archive}": archive.read_bytes()}) as (base, _):
        cifar.SOURCES["cifar10"] = dataclasses.replace(fixture, urls=(base,),
                                                        archive_md5="0" * 32)
        with pytest.raises(DataError) as e:
            load_dataset("cifar10")
    msg = str(e.value)
    assert f"{fixture.archive} downloaded from {base}{fixture.archive} is corrupt" in msg
    assert "expected 00000000" in msg and "cifar10:PATH" in msg
    assert not list((home / "cifar10").iterdir())  # nothing kept, not even a temp file


def test_download_truncated_transfer(home, c10):
    archive, fixture, _ = c10
    size = len(archive.read_bytes())
    with serve({f"/{fixture.archive}": archive.read_bytes()}, truncate=True) as (base, _):
        cifar.SOURCES["cifar10"] = dataclasses.replace(fixture, urls=(base,))
        with pytest.raises(DataError, match=rf"cut off after {size // 2} of {size} bytes"):
            load_dataset("cifar10")
    assert not list((home / "cifar10").iterdir())


def test_download_server_down(home, c10):
    _, fixture, _ = c10
    url = f"http://127.0.0.1:{_closed_port()}/"
    cifar.SOURCES["cifar10"] = dataclasses.replace(fixture, urls=(url,))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10")
    msg = str(e.value)
    assert msg.startswith(f"cannot download {url}{fixture.archive} (connection refused")
    expected_file = home / "cifar10" / fixture.archive
    assert f"expected file {expected_file}" in msg
    assert "'cifar10:PATH'" in msg and "CNNLAB_HOME" in msg and "\n" not in msg
