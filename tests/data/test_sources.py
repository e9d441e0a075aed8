"""Spec parsing, load_dataset's options, cache_dir and the decode-cache store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import load_dataset
from cnnlab.data.sources import Spec, cache, parse_spec
from cnnlab.data.sources.cache import cache_dir
from cnnlab.errors import DataError


@pytest.mark.parametrize("text, spec", [
    ("cifar10", Spec("cifar10")),
    ("CIFAR-100", Spec("cifar100")),
    ("fashion_mnist", Spec("fashion-mnist")),
    ("mnist:/data/m", Spec("mnist", "/data/m")),
    ("folder:C:/x/y.zip", Spec("folder", "C:/x/y.zip")),
    (" digits ", Spec("digits")),
])
def test_parse_spec(text, spec):
    assert parse_spec(text) == spec


@pytest.mark.parametrize("text, pattern", [
    ("cifar01", r"unknown dataset 'cifar01'; did you mean 'cifar10'\? known: cifar10, cifar100"),
    ("imagenet", r"unknown dataset 'imagenet'; known: .*folder:PATH"),
    ("folder", r"'folder' needs a path"),
    ("folder:", r"lacks the path after ':'"),
    ("digits:/x", r"dataset 'digits' takes no path"),
])
def test_bad_specs(text, pattern):
    with pytest.raises(DataError, match=pattern):
        parse_spec(text)


def test_existing_path_suggests_folder(tmp_path):
    with pytest.raises(DataError, match=f"did you mean 'folder:{tmp_path}'"):
        parse_spec(str(tmp_path))


@pytest.mark.parametrize("kw, pattern", [
    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\), got 1.0"),
    ({"test_fraction": -0.1}, r"test_fraction must be in"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, r"val_fraction \+ test_fraction must be < 1"),
    ({"resize": -3}, r"resize must be 0 \(keep\) or a positive side"),
])
def test_bad_options(kw, pattern):
    with pytest.raises(DataError, match=pattern):
        load_dataset("digits", **kw)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "cnnlab"
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home"
    assert cache_dir(tmp_path / "root") == tmp_path / "root"
    monkeypatch.delenv("CNNLAB_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "cnnlab"


def test_decoded_store_is_atomic_and_versioned(tmp_path, monkeypatch):
    entry = cache.decoded_path(tmp_path, "x y/z", "ab" * 32)
    assert entry.parent == tmp_path / "decoded" and "/" not in entry.name[2:]
    arrays = {"train_images": np.zeros((2, 3, 3, 3), np.uint8),
              "train_labels": np.array([0, 1], np.int64)}
    assert cache.load_decoded(entry) is None
    cache.store_decoded(entry, arrays, {"classes": ["a", "b"]})
    got = cache.load_decoded(entry)
    assert got.meta["classes"] == ["a", "b"] and np.array_equal(got.arrays["train_labels"], [0, 1])
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temp folder left
    monkeypatch.setattr(cache, "CACHE_VERSION", cache.CACHE_VERSION + 1)
    assert cache.load_decoded(entry) is None  # another layout version: not trusted
    (entry / "train_labels.npy").write_bytes(b"broken")
    cache.store_decoded(entry, arrays, {"classes": ["a", "b"]})  # replaces the broken entry
    assert cache.load_decoded(entry) is not None


def test_store_failure_leaves_nothing(tmp_path):
    entry = cache.decoded_path(tmp_path, "x", "cd" * 32)
    with pytest.raises(ValueError):
        cache.store_decoded(entry, {"a": np.array([object()])}, {})  # object arrays refused
    assert not entry.exists() and not list(entry.parent.iterdir())
