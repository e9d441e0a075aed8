"""folder:PATH sources: trees, archives, odd images, errors and the decode cache."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.sources import folder
from cnnlab.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-train.tar.gz"


def _png(path: Path, color, mode: str = "RGB", size=(6, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        im = Image.new("RGB", size, color).convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        im = Image.new(mode, size, color)
    im.save(path)


def make_tree(root: Path) -> Path:
    """cat/ (RGB, grayscale, RGBA) and dog/ (RGB, palette, JPEG), 6x4 pixels (W x H)."""
    _png(root / "cat" / "a.png", (200, 10, 10))
    _png(root / "cat" / "b.png", 100, mode="L")
    _png(root / "cat" / "c.png", (10, 20, 30, 128), mode="RGBA")
    _png(root / "dog" / "a.png", (0, 0, 255))
    _png(root / "dog" / "b.gif", (0, 255, 0), mode="P")
    _png(root / "dog" / "sub" / "c.jpg", (128, 128, 128))  # deeper inside a class folder
    (root / "dog" / "notes.txt").write_text("not an image")  # ignored
    (root / ".DS_Store").write_bytes(b"\0")  # hidden: ignored
    return root


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _load(path, **kw):
    return load_dataset(f"folder:{path}", test_fraction=0.0, progress=False, **kw)


def test_tree_rgb_conversion_and_labels(tmp_path):
    ds = _load(make_tree(tmp_path / "t"))
    x, y = ds.train.images, ds.train.labels
    assert ds.classes == ["cat", "dog"] and not ds.official_test and ds.test is None
    assert x.dtype == torch.uint8 and x.shape == (6, 4, 6, 3)  # (N, H, W, C)
    assert y.tolist() == [0, 0, 0, 1, 1, 1]  # sorted by class, then path
    assert x[0, 0, 0].tolist() == [200, 10, 10]
    assert x[1, 0, 0].tolist() == [100, 100, 100]  # grayscale -> RGB
    assert x[2, 0, 0].tolist() == [10, 20, 30]  # RGBA -> RGB, alpha dropped
    assert x[4, 0, 0].tolist() == [0, 255, 0]  # palette -> RGB
    assert abs(int(x[5, 0, 0, 0]) - 128) <= 3  # JPEG, in dog/sub/
    assert ds.info["ignored_files"] == 1


def test_test_split_is_carved_seeded(tmp_path):
    root = tmp_path / "t"
    for c in ("a", "b"):
        for i in range(5):
            _png(root / c / f"{i}.png", (i * 40, 0, 0))
    one = load_dataset(f"folder:{root}", test_fraction=0.4, split_seed=3)
    two = load_dataset(f"folder:{root}", test_fraction=0.4, split_seed=3)
    assert len(one.test) == 4 and one.test.counts() == [2, 2]
    assert torch.equal(one.test.images, two.test.images)


def test_misnamed_and_truncated_files(tmp_path):
    _png(tmp_path / "a.png", (5, 6, 7))
    png = (tmp_path / "a.png").read_bytes()
    assert folder.decode_image(png, 0, "really_a_png.jpg")[0, 0].tolist() == [5, 6, 7]
    Image.new("RGB", (16, 16), (1, 2, 3)).save(tmp_path / "b.jpg")
    cut = (tmp_path / "b.jpg").read_bytes()[:-40]
    assert isinstance(folder.decode_image(cut, 0, "b.jpg"), str)  # truncated: unreadable
    assert folder.decode_image(b"", 0, "c.png") == "empty file"


@pytest.mark.parametrize("kind", ["tar.gz", "tgz", "tar", "zip"])
def test_archives_match_the_tree(tmp_path, kind):
    tree = make_tree(tmp_path / "data")
    archive = tmp_path / f"data.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in sorted(tree.rglob("*")):
                zf.write(p, p.relative_to(tmp_path).as_posix())
    else:
        with tarfile.open(archive, "w:gz" if "gz" in kind else "w") as tf:
            tf.add(tree, arcname="data")  # a wrapper folder around the class folders
    ref, got = _load(tree), _load(archive)
    assert got.classes == ref.classes and got.info["wrapper"] == "data"
    assert torch.equal(got.train.images, ref.train.images)
    assert torch.equal(got.train.labels, ref.train.labels)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_reader_long_names_and_formats(tmp_path, fmt):
    long_class = "c" * 60 + "é"  # paths over 100 bytes: ustar prefix, GNU 'L', pax 'x'
    root = tmp_path / "d" / ("w" * 40)
    _png(root / long_class / ("f" * 50 + ".png"), (9, 8, 7))
    _png(root / "short" / "x.png", (1, 2, 3))
    archive = tmp_path / "d.tar.bz2"
    with tarfile.open(archive, "w:bz2", format=fmt) as tf:
        tf.add(tmp_path / "d", arcname="d")
    names = [n for n, is_dir, _ in folder.iter_tar(archive) if not is_dir]
    with tarfile.open(archive) as tf:
        assert names == [m.name for m in tf.getmembers() if m.isfile()]
    ds = _load(archive)
    assert ds.classes == [long_class, "short"] and ds.train.images[0, 0, 0].tolist() == [9, 8, 7]


def test_not_a_tar(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"hello" * 200)
    with pytest.raises(DataError, match=r"x.tar is corrupt or truncated \(bad tar header"):
        _load(tmp_path / "x.tar")


def test_damaged_tar_archives_are_errors(tmp_path):
    tree = make_tree(tmp_path / "data")
    archive = tmp_path / "d.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tf:
        tf.add(tree, arcname="data")
    good = archive.read_bytes()
    with tarfile.open(archive) as tf:
        third = tf.getmembers()[3].offset  # a header in the middle of the archive
        data_at = next(m.offset_data for m in tf.getmembers() if m.size > 100)
    damaged = bytearray(good)
    damaged[third + 10] ^= 0xFF
    cases = {
        "header.tar": (bytes(damaged), rf"bad tar header checksum at byte {third}"),
        "in_header.tar": (good[: third + 100], r"ends inside an entry"),
        "in_data.tar": (good[: data_at + 50], r"unexpected end of data"),
        "gz.tar.gz": (gzip.compress(good)[:-4], r"Compressed file ended"),
    }
    for name, (data, pattern) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=rf"{name} is corrupt or truncated \(.*{pattern}"):
            _load(tmp_path / name)
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(DataError, match="no images found"):
        _load(tmp_path / "empty.tar")


def test_odd_tar_members_are_ignored(tmp_path):
    tree = make_tree(tmp_path / "data")
    archive = tmp_path / "odd.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(tree, arcname="data")
        png = (tree / "cat" / "a.png").read_bytes()
        for name in ("../evil/x.png", "data/../../up.png", "data/.hidden/x.png"):
            info = tarfile.TarInfo(name)
            info.size = len(png)
            tf.addfile(info, io.BytesIO(png))
        for name, kind in (("data/cat/link.png", tarfile.SYMTYPE),
                           ("data/dog/hard.png", tarfile.LNKTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "data/cat/a.png"
            tf.addfile(info)
    ref, got = _load(tree), _load(archive)
    assert got.classes == ref.classes and torch.equal(got.train.images, ref.train.images)


def test_train_test_subtrees_are_the_official_split(tmp_path):
    root = tmp_path / "t"
    for split, n in (("train", 3), ("test", 2)):
        for c in ("x", "y"):
            for i in range(n):
                _png(root / split / c / f"{i}.png", (i, 0, 0))
    ds = load_dataset(f"folder:{root}", test_fraction=0.5, val_fraction=0.34)
    assert ds.official_test and ds.classes == ["x", "y"]
    assert len(ds.test) == 4  # official: test_fraction does not apply
    assert len(ds.train) + len(ds.val) == 6 and ds.val.counts() == [1, 1]


def test_unreadable_files_listed_or_skipped(tmp_path):
    root = make_tree(tmp_path / "t")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError) as e:
        _load(root)
    msg = str(e.value)
    assert msg.startswith("2 unreadable image file(s) in")
    assert "cat/broken.png" in msg and "dog/empty.jpg" in msg and "--skip-bad" in msg
    with pytest.warns(UserWarning, match="2 unreadable image file"):
        ds = _load(root, skip_bad=True)
    assert len(ds.train) == 6 and ds.info["skipped"] == ["cat/broken.png", "dog/empty.jpg"]


def test_mixed_sizes_need_resize(tmp_path):
    root = make_tree(tmp_path / "t")
    _png(root / "dog" / "big.png", (1, 2, 3), size=(9, 7))
    with pytest.raises(DataError, match=r"cat/a.png is 6x4 but dog/big.png is 9x7.*--resize N"):
        _load(root)
    ds = _load(root, resize=5)
    assert ds.train.images.shape == (7, 5, 5, 3)


@pytest.mark.parametrize("case, pattern", [
    ("empty_class", r"class folder 'bird' in .* has no images"),
    ("no_images", r"no images found in"),
    ("flat", r"lie directly in .*one subfolder per class"),
    ("one_class", r"holds 1 class folder \(cat\)"),
])
def test_layout_errors(tmp_path, monkeypatch, case, pattern):
    # a folder's layout is checked from its listing, before anything is decoded
    monkeypatch.setattr(folder, "_decode_all", None)
    root = tmp_path / "t"
    if case == "empty_class":
        make_tree(root)
        (root / "bird").mkdir()
    elif case == "no_images":
        (root / "a").mkdir(parents=True)
        (root / "a" / "x.txt").write_text("x")
    elif case == "flat":
        _png(root / "1.png", (0, 0, 0))
        _png(root / "2.png", (0, 0, 0))
    else:
        _png(root / "cat" / "1.png", (0, 0, 0))
        _png(root / "cat" / "2.png", (0, 0, 0))
        _png(root / "3.png", (0, 0, 0))
    with pytest.raises(DataError, match=pattern):
        _load(root)


def test_empty_class_in_archive_and_bad_paths(tmp_path):
    tree = make_tree(tmp_path / "data")
    (tree / "bird").mkdir()
    archive = tmp_path / "d.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tree, arcname="data")
    with pytest.raises(DataError, match=r"class folder 'data/bird'"):
        _load(archive)
    with pytest.raises(DataError, match="does not exist"):
        _load(tmp_path / "nope")
    (tmp_path / "x.rar").write_bytes(b"x")
    with pytest.raises(DataError, match=r"neither a folder nor a \.tar"):
        _load(tmp_path / "x.rar")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut.tar.gz is corrupt or truncated"):
        _load(cut)


def test_cache_reuse_and_invalidation(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "t")
    first = _load(root)
    assert Path(first.cache_path).is_dir()

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(folder, "_decode_all", no_decode)
    again = _load(root)
    assert torch.equal(first.train.images, again.train.images)
    assert again.cache_path == first.cache_path
    # a changed tree gets a new key, so it is decoded again
    _png(root / "dog" / "new.png", (1, 1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        _load(root)


def test_pool_decoding_matches_serial(tmp_path, monkeypatch):
    root = tmp_path / "t"
    for c in ("a", "b"):
        for i in range(12):
            _png(root / c / f"{i:02d}.png", (i * 20, 0, 0))
    (root / "b" / "bad.png").write_bytes(b"nope")
    monkeypatch.setenv(folder.WORKERS_ENV, "1")
    with pytest.warns(UserWarning, match="b/bad.png"):
        serial = _load(root, skip_bad=True, resize=3)
    shutil.rmtree(serial.cache_path)
    monkeypatch.setenv(folder.WORKERS_ENV, "2")
    monkeypatch.setattr(folder, "POOL_MIN", 8)
    monkeypatch.setattr(folder, "CHUNK", 5)
    with pytest.warns(UserWarning, match="b/bad.png"):
        pooled = _load(root, skip_bad=True, resize=3)
    assert torch.equal(serial.train.images, pooled.train.images)
    assert pooled.info["skipped"] == ["b/bad.png"]


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_file(), reason=f"{SHARED} is absent")
def test_shared_cifar10_jpeg_archive(monkeypatch):
    t0 = time.perf_counter()
    ds = load_dataset(f"folder:{SHARED}", test_fraction=0.0, progress=False)
    first = time.perf_counter() - t0
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                          "horse", "ship", "truck"]
    assert ds.train.images.shape == (50000, 32, 32, 3) and ds.train.counts() == [5000] * 10
    # per-channel mean from a histogram (fast): README gives (0.4913, 0.4821, 0.4465)
    flat = ds.train.images.reshape(-1, 3)
    mean = [float((torch.bincount(flat[:, c], minlength=256).double()
                   * torch.arange(256)).sum() / len(flat) / 255) for c in range(3)]
    assert np.allclose(mean, [0.4913, 0.4821, 0.4465], atol=2e-3)
    monkeypatch.setattr(folder, "_decode_all", None)  # a second load must not decode
    t0 = time.perf_counter()
    again = load_dataset(f"folder:{SHARED}", test_fraction=0.0)
    print(f"first load {first:.2f} s, second {time.perf_counter() - t0:.2f} s")
    assert torch.equal(again.train.labels, ds.train.labels)


def test_non_image_files_beside_the_images_are_ignored(tmp_path):
    """What file managers and people leave in image folders is not an image to decode."""
    root = make_tree(tmp_path / "t")
    (root / "cat" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    (root / "dog" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "README").write_text("photos of pets\n")
    (root / "cat" / "README.md").write_text("# cats\n")
    ds = _load(root)
    assert ds.classes == ["cat", "dog"] and len(ds.train) == 6  # the same six images


def test_data_limit_draws_across_classes(tmp_path):
    """Folder splits are stored class by class: data.limit must not keep the first class only."""
    from cnnlab.config import RunConfig
    from cnnlab.train.run import prepare_data

    for c in range(3):
        for i in range(8):
            _png(tmp_path / "t" / f"c{c}" / f"{i}.png", (80 * c, 10 * i, 0))
    cfg = RunConfig().set(**{"data.spec": f"folder:{tmp_path / 't'}", "data.test_fraction": 0.0,
                             "data.val_fraction": 0.0, "data.limit": 6})
    ds = prepare_data(cfg)
    assert len(ds.train) == 6 and len(ds.train.labels.unique()) > 1
