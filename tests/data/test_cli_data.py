"""``cnnlab data info`` / ``cnnlab data prepare`` through cnnlab.cli.main."""

from __future__ import annotations

import json
import socket

import pytest
from PIL import Image

from cnnlab.cli import main


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    # never the real servers from a test: a closed local port plays "no network"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CNNLAB_MIRROR", f"http://127.0.0.1:{port}")
    return tmp_path / "home"


def _tree(root):
    for c, color in (("ants", (255, 0, 0)), ("bees", (0, 0, 255))):
        for i in range(5):
            (root / c).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4), color).save(root / c / f"{i}.png")
    return root


def test_info_digits(capsys):
    assert main(["data", "info", "digits", "--val-fraction", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "classes   10: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in out
    assert "image     32x32x1 (H x W x C), uint8" in out
    assert "test          359 images" in out and "(held out, seeded)" in out
    assert "total       1,797 images" in out
    assert "mean      0." in out and "std       0." in out
    assert "cache     none (bundled data)" in out


def test_info_folder_json_and_prepare(tmp_path, capsys, home):
    root = _tree(tmp_path / "t")
    assert main(["data", "prepare", f"folder:{root}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ready: folder:{root}: 10 images, 2 classes, 4x4x3; cache {home}")
    assert main(["data", "info", f"folder:{root}", "--json", "--test-fraction", "0.4"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["classes"] == ["ants", "bees"] and s["splits"] == {"train": 6, "test": 4}
    assert s["per_class"]["test"] == [2, 2] and s["total"] == 10
    assert [round(m, 3) for m in s["mean"]] == [0.5, 0.0, 0.5]
    assert s["cache"].startswith(str(home / "decoded"))


def test_info_cifar10_offline_is_one_clear_line(capsys):
    assert main(["data", "info", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("cnnlab: error: cannot download http://127.0.0.1:")
    assert "cifar-10-python.tar.gz" in err and "'cifar10:PATH'" in err


@pytest.mark.parametrize("argv, pattern", [
    (["data", "info", "cifar01"], "did you mean 'cifar10'"),
    (["data", "info", "folder:/no/such/dir"], "/no/such/dir does not exist"),
    (["data", "info", "mnist", "--no-download"], "mnist is not in the cache"),
])
def test_errors_exit_2_with_one_line(capsys, argv, pattern):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: ") and pattern in err and err.count("\n") == 1


def test_skip_bad_warning_and_resize(tmp_path, capsys):
    root = _tree(tmp_path / "t")
    (root / "ants" / "x.png").write_bytes(b"junk")
    Image.new("RGB", (7, 7)).save(root / "bees" / "big.png")
    assert main(["data", "info", f"folder:{root}", "--skip-bad", "--resize", "3"]) == 0
    captured = capsys.readouterr()
    assert "cnnlab: warning: 1 unreadable image file(s)" in captured.err
    assert "image     3x3x3" in captured.out and "skipped   1 unreadable" in captured.out


@pytest.mark.parametrize("argv", [["data", "--help"], ["data", "info", "--help"],
                                  ["data", "prepare", "--help"]])
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: cnnlab data" in out and "folder:PATH" in out


def test_data_without_action_prints_usage(capsys):
    assert main(["data"]) == 2
    assert "info" in capsys.readouterr().out


def test_info_summary_is_cached_and_needs_no_torch(tmp_path, monkeypatch):
    """The second `data info` for the same file prints the stored summary: no torch import."""
    import subprocess
    import sys

    from cnnlab.cli import main

    assert main(["data", "info", "digits"]) == 0
    code = ("import sys; from cnnlab.cli import main; rc = main(['data', 'info', 'digits']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "classes   10" in out.stdout
