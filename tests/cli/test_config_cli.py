import json

import pytest

from cnnlab.cli import main
from cnnlab.config import CHOICES, RunConfig, key_table, known_keys


def test_every_key_has_a_help_line_and_its_default():
    rows = key_table()
    assert [r["key"] for r in rows] == known_keys()
    flat = RunConfig().flat()
    for r in rows:
        assert r["help"].strip(), f"{r['key']} has no help comment in config.py"
        assert r["allowed"], r["key"]
        assert json.dumps(r["default"]) == json.dumps(flat[r["key"]])
    assert {r["key"]: r["allowed"] for r in rows}["optim.name"] == list(CHOICES["optim.name"])


def test_cli_config_lists_selects_and_json(capsys):
    assert main(["config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KEY", "DEFAULT", "ALLOWED", "HELP"]
    assert len(lines) == len(known_keys()) + 1
    assert main(["config", "optim.lr"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].split()[:3] == ["optim.lr", "0.001", "number"]
    assert main(["config", "train.*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["key"].startswith("train.") for r in rows)
    assert main(["config", "decay"]) == 0  # a part of a key
    assert "optim.weight_decay" in capsys.readouterr().out


@pytest.mark.parametrize("pattern", ["optim.lrr", "nothing*"])
def test_cli_config_no_match_is_one_line(capsys, pattern):
    assert main(["config", pattern]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cnnlab: error: no config key matches '{pattern}'")
    assert len(err.strip().splitlines()) == 1
