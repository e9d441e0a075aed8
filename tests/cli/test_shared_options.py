"""The same flags on every command: --quiet, --skip-bad / --resize, --seed, --device."""

import json
from pathlib import Path

from PIL import Image

from cnnlab.cli import main

TINY_SWEEP = """
name = "tiny-cli"
reps = 1
[base.data]
spec = "digits"
limit = 96
[base.model]
name = "vgg"
width = 4
[base.train]
epochs = 1
device = "cpu"
[grid]
"model.blocks" = [1, 2]
"""


def _messy_folder(root: Path) -> Path:
    """Two classes of mixed image sizes (needs --resize) and one unreadable file
    (needs --skip-bad)."""
    for k, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True)
        for i in range(24):
            size = (12, 12) if i % 2 else (16, 10)
            color = (40 * k + i, 100 + 3 * i, 200 - i * k)  # no channel constant
            Image.new("RGB", size, color).save(root / cls / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_sweep_quiet_prints_no_per_run_lines(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SWEEP)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--quiet",
                 "--no-report", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "[1/2]" not in out and "sweep folder:" in out
    # without --quiet the same sweep (rerun: skipped) still logs
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s2"), "--no-report",
                 "--workers", "1"]) == 0
    assert "[1/2]" in capsys.readouterr().out


def test_sweep_seed_sets_the_base_seed(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SWEEP)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--quiet", "--no-report",
                 "--seed", "7", "--workers", "1"]) == 0
    seeds = [json.loads(p.read_text())["seed"] for p in (tmp_path / "s").rglob("config.json")]
    assert sorted(seeds) == [7, 7]  # per-rep seeding: seed + rep, rep 0 in both cells


def test_train_skip_bad_and_resize_reach_the_loader(tmp_path, capsys):
    data = f"folder:{_messy_folder(tmp_path / 'messy')}"
    args = ["train", "vgg", "--data", data, "--out", str(tmp_path / "run"), "--epochs", "1",
            "--quiet", "--set", "model.width=4", "--set", "model.blocks=1"]
    assert main(args) == 2  # mixed sizes: refused in one line naming the fix
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resize" in err
    assert main([*args, "--resize", "12", "--skip-bad"]) == 0, capsys.readouterr().err
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["config"]["data"]["resize"] == 12 and info["config"]["data"]["skip_bad"]
    assert info["dataset"]["image_shape"] == [12, 12, 3]
    assert sum(info["dataset"]["sizes"].values()) == 48  # the broken file was skipped


def test_sweep_skip_bad_and_resize_reach_every_run(tmp_path, capsys):
    data = f"folder:{_messy_folder(tmp_path / 'messy')}"
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SWEEP.replace("limit = 96", "limit = 0"))
    assert main(["sweep", str(spec), "--data", data, "--out", str(tmp_path / "s"), "--quiet",
                 "--no-report", "--workers", "1", "--resize", "12", "--skip-bad"]) == 0, \
        capsys.readouterr()
    infos = [json.loads(p.read_text()) for p in (tmp_path / "s").rglob("config.json")]
    assert len(infos) == 2
    assert all(i["config"]["data"]["resize"] == 12 and i["config"]["data"]["skip_bad"]
               and i["dataset"]["image_shape"] == [12, 12, 3] for i in infos)


def test_augment_preview_takes_skip_bad_and_resize(tmp_path, capsys):
    data = f"folder:{_messy_folder(tmp_path / 'messy')}"
    out = tmp_path / "grid.png"
    assert main(["augment", "preview", "--data", data, "--pipeline", "flip", "--out", str(out),
                 "--n", "2", "--k", "2", "--quiet"]) == 2
    assert main(["augment", "preview", "--data", data, "--pipeline", "flip", "--out", str(out),
                 "--n", "2", "--k", "2", "--resize", "12", "--skip-bad", "--quiet"]) == 0
    assert out.is_file() and Image.open(out).size[0] > 24


def test_config_keys_match_the_flags(tmp_path):
    """data.skip_bad / data.resize as config keys do what the flags do."""
    data = f"folder:{_messy_folder(tmp_path / 'messy')}"
    assert main(["train", "vgg", "--data", data, "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--quiet", "--set", "model.blocks=1", "--set", "model.width=4",
                 "--set", "data.resize=12", "--set", "data.skip_bad=true"]) == 0
