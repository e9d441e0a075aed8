"""A sweep's [sizes.SOURCE] form: applied by --data SOURCE, under the user's overrides."""

import pytest

from cnnlab.errors import ConfigError
from cnnlab.experiments import list_presets, load_spec, resolve_spec
from cnnlab.experiments.spec import spec_from_dict
from cnnlab.models.registry import create_model

SPEC = {
    "name": "t", "reps": 3, "description": "big",
    "base": {"model": {"name": "vgg"}, "train": {"epochs": 30}},
    "grid": {"data.train_size": [1000, 5000], "model.width": [8, 16]},
    "sizes": {"digits": {"description": "small", "reps": 1,
                         "grid": {"data.train_size": [100, 200, 300]},
                         "set": {"train.epochs": 5, "optim.betas": [0.8, 0.9]}}},
}


def test_size_applies_with_its_data_source_only():
    small = resolve_spec(SPEC, data="digits")
    assert (small.name, small.size, small.reps, small.description) == ("t-digits", "digits", 1,
                                                                       "small")
    assert small.grid == {"data.train_size": [100, 200, 300], "model.width": [8, 16]}
    cfg = small.run_config(small.cells()[0], 0)
    assert (cfg.data.spec, cfg.train.epochs, cfg.optim.betas) == ("digits", 5, (0.8, 0.9))
    big = resolve_spec(SPEC, data="folder:/x.tar.gz")
    assert (big.name, big.reps, big.size) == ("t", 3, "")
    assert big.run_config(big.cells()[0], 0).train.epochs == 30


def test_user_overrides_and_reps_win_over_the_size():
    spec = resolve_spec(SPEC, data="digits", overrides=["train.epochs=2"], reps=2)
    assert spec.reps == 2
    assert spec.run_config(spec.cells()[-1], 1).train.epochs == 2


def test_resolving_an_applied_size_again_changes_nothing():
    once = resolve_spec(SPEC, data="digits")
    twice = resolve_spec(once.to_dict(), data="digits")
    assert (twice.name, twice.grid, twice.reps) == (once.name, once.grid, once.reps)
    cfg = twice.run_config(twice.cells()[0], 0)
    assert cfg.train.epochs == 5


@pytest.mark.parametrize("size, message", [
    ({"grid": {"model.depth": [1]}}, r"names axes \['model.depth'\]"),
    ({"epochs": 3}, r"unknown key\(s\) \['epochs'\]"),
    ({"set": {"train.epoch": 3}}, "unknown config key 'train.epoch'"),
])
def test_bad_sizes(size, message):
    with pytest.raises(ConfigError, match=message):
        resolve_spec({**SPEC, "sizes": {"digits": size}}, data="digits")


@pytest.mark.parametrize("name", [n for n in sorted(list_presets())
                                  if load_spec(n).sizes.get("digits")
                                  or load_spec(n).base.get("data", {}).get("spec") == "digits"])
def test_digits_forms_of_presets_build(name):
    """Every preset's digits form expands to models that take digits' 32x32 one-channel
    images."""
    import torch

    spec = resolve_spec(name, data="digits")
    assert spec.description
    for cell in spec.cells():
        cfg = spec.run_config(cell, 0)
        model = create_model(cfg.model.name, num_classes=10, in_chans=1, input_size=32,
                             **cfg.model.args)
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_phenomenon_presets_name_their_analysis():
    from cnnlab.report.phenomena import list_analyses

    for name in ("memorization", "double-descent", "scaling", "grokking", "early-stopping"):
        assert load_spec(name).analysis in list_analyses(), name
    with pytest.raises(ConfigError):
        spec_from_dict({**SPEC, "sizes": {"digits": {"reps": 1, "colour": 2}}})
