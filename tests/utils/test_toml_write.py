import math
import tomllib

import pytest

from cnnlab.config import RunConfig, from_dict
from cnnlab.utils.toml_write import dumps


@pytest.mark.parametrize("tables", [
    {"model": {"é": 1}},                                   # non-ASCII key (the old writer broke)
    {"model": {"name": "vgg", "args": {"größe": 3, "名前": "ü"}}},
    {"data": {"spec": "folder:/tmp/Über ordner/ç.tar", "augment": [{"op": "crop", "pad": 4}]}},
    {"optim": {"betas": [0.9, 0.999], "lr": 1e-3, "nesterov": True}},
    {"a b": {"key with spaces": "quote \" and backslash \\ and newline \n"}},
])
def test_round_trip(tables):
    assert tomllib.loads(dumps(tables)) == tables


def test_none_is_left_out_and_special_floats_survive():
    back = tomllib.loads(dumps({"train": {"epochs": 3, "threads": None,
                                          "x": {"y": None, "z": math.inf}}}))
    assert back == {"train": {"epochs": 3, "x": {"z": math.inf}}}
    assert math.isnan(tomllib.loads(dumps({"t": {"v": math.nan}}))["t"]["v"])


def test_run_config_round_trips():
    cfg = RunConfig().set(**{"model.name": "resnet20", "model.args": {"width": 8, "stem": "auto"},
                             "optim.lr": 3e-3, "data.spec": "folder:/data/ñ"})
    tables = cfg.to_dict()
    tables["data"] = {k: v for k, v in tables["data"].items() if v not in (None, "")}
    assert from_dict(tomllib.loads(dumps(tables))) == cfg
