import pytest

from cnnlab.config import RunConfig, apply_overrides, config_diff, load_config
from cnnlab.errors import ConfigError


def test_overrides_parse_types():
    cfg = load_config(overrides=["optim.lr=3e-3", "model.blocks=4", "train.compile=true",
                                 "data.spec=folder:/x/y.tar.gz", "optim.betas=[0.8, 0.9]"])
    assert cfg.optim.lr == 0.003 and cfg.model.args["blocks"] == 4 and cfg.train.compile is True
    assert cfg.data.spec == "folder:/x/y.tar.gz" and cfg.optim.betas == (0.8, 0.9)


def test_toml_file_and_overrides(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text('[model]\nname = "vgg"\nblocks = 2\n[optim]\nlr = 0.01\n[train]\nepochs = 4\n')
    cfg = load_config(p, ["train.epochs=5"])
    assert (cfg.model.args, cfg.optim.lr, cfg.train.epochs) == ({"blocks": 2}, 0.01, 5)


def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'; did you mean optim.lr"):
        load_config(overrides=["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="unknown config key 'foo.bar'"):
        load_config(overrides=["foo.bar=1"])


@pytest.mark.parametrize("item, message", [
    ("data.batch_size=0", "data.batch_size must be >= 1"),
    ("optim.lr=0", "optim.lr must be > 0"),
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("train.epochs=abc", "train.epochs must be an integer"),
    ("train.compile=maybe", "train.compile must be true or false"),
    ("data.val_fraction=1.5", r"data.val_fraction must be in \[0, 1\)"),
    ("lr", "must look like key=value"),
])
def test_bad_values(item, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[item])


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr=")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_diff_and_roundtrip():
    a = RunConfig().flat()
    b = RunConfig().set(**{"optim.lr": 0.5}).flat()
    assert config_diff(a, b) == ["optim.lr"]
    assert config_diff(a, b, ignore={"optim.lr"}) == []


def test_auto_true_false_keys_accept_a_bare_boolean():
    cfg = apply_overrides(RunConfig(), ["train.channels_last=false",
                                        "train.keep_freed_memory=true"])
    assert (cfg.train.channels_last, cfg.train.keep_freed_memory) == ("false", "true")
    with pytest.raises(ConfigError, match="train.tta must be a string"):
        apply_overrides(RunConfig(), ["train.tta=true"])
