"""MNIST / Fashion-MNIST against synthetic IDX files, gzipped and raw."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import load_dataset
from cnnlab.data.sources import mnist
from cnnlab.errors import DataError

SIZES = {"train": 6, "test": 3}


def idx_bytes(a: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0, 0, 0x08, ndim, big-endian dims, values."""
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def make_idx(folder: Path, gz: bool = True) -> tuple[dict, dict[str, str]]:
    """The four files in ``folder``; returns the arrays and the md5 of each .gz file."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, md5 = {}, {}
    for split, n in SIZES.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 10).astype(np.uint8)
    for part, (fname, _) in mnist.SOURCES["mnist"].files.items():
        raw = idx_bytes(arrays[part])
        packed = gzip.compress(raw, mtime=0)
        md5[fname] = hashlib.md5(packed).hexdigest()
        if gz:
            (folder / fname).write_bytes(packed)
        else:
            (folder / fname.removesuffix(".gz")).write_bytes(raw)
    return arrays, md5


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CNNLAB_MIRROR", raising=False)
    return tmp_path / "home"


def _inject(monkeypatch, name: str, md5: dict[str, str]) -> None:
    src = mnist.SOURCES[name]
    files = {k: (f, md5[f]) for k, (f, _) in src.files.items()}
    monkeypatch.setitem(mnist.SOURCES, name, dataclasses.replace(
        src, files=files, urls=("http://127.0.0.1:9/",)))


def _check(ds, arrays, classes=None):
    assert ds.official_test
    assert ds.train.images.shape == (SIZES["train"], 28, 28, 1)
    np.testing.assert_array_equal(ds.train.images[..., 0].numpy(), arrays["train_images"])
    np.testing.assert_array_equal(ds.test.labels.numpy(), arrays["test_labels"])
    if classes:
        assert ds.classes == classes


@pytest.mark.parametrize("gz", [True, False])
def test_local_folder_gz_and_raw(home, tmp_path, monkeypatch, gz):
    arrays, md5 = make_idx(tmp_path / "m", gz=gz)
    _inject(monkeypatch, "mnist", md5)
    _check(load_dataset(f"mnist:{tmp_path / 'm'}"), arrays, [str(i) for i in range(10)])


def test_fashion_classes(home, tmp_path, monkeypatch):
    arrays, md5 = make_idx(tmp_path / "f")
    _inject(monkeypatch, "fashion-mnist", md5)
    ds = load_dataset(f"fashion-mnist:{tmp_path / 'f'}", resize=32)
    assert ds.classes[0] == "T-shirt/top" and ds.train.images.shape == (6, 32, 32, 1)


def test_wrong_checksum_names_the_file(home, tmp_path, monkeypatch):
    _, md5 = make_idx(tmp_path / "m")
    md5["t10k-labels-idx1-ubyte.gz"] = "f" * 32
    _inject(monkeypatch, "mnist", md5)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz is corrupt or truncated"):
        load_dataset(f"mnist:{tmp_path / 'm'}")


def test_truncated_raw_idx_names_the_file(home, tmp_path, monkeypatch):
    _, md5 = make_idx(tmp_path / "m", gz=False)
    _inject(monkeypatch, "mnist", md5)
    f = tmp_path / "m" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has \d+ bytes, but its header"):
        load_dataset(f"mnist:{tmp_path / 'm'}")


def test_missing_file_and_not_idx(home, tmp_path, monkeypatch):
    _, md5 = make_idx(tmp_path / "m", gz=False)
    _inject(monkeypatch, "mnist", md5)
    (tmp_path / "m" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-images-idx3-ubyte.gz \(gzipped or not\)"):
        load_dataset(f"mnist:{tmp_path / 'm'}")
    (tmp_path / "m" / "t10k-images-idx3-ubyte").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="not an IDX file"):
        load_dataset(f"mnist:{tmp_path / 'm'}")


def test_download_through_file_mirror(home, tmp_path, monkeypatch):
    arrays, md5 = make_idx(tmp_path / "mirror" / "mnist")
    _inject(monkeypatch, "mnist", md5)
    monkeypatch.setenv("CNNLAB_MIRROR", (tmp_path / "mirror").as_uri())
    _check(load_dataset("mnist", progress=False), arrays)
    assert sorted(p.name for p in (home / "mnist").iterdir()) == sorted(md5)
    monkeypatch.delenv("CNNLAB_MIRROR")
    _check(load_dataset("mnist", download=False), arrays)  # from the cache now
