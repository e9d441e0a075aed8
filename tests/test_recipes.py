"""Recipes as data: shipped names, precedence (defaults < recipe < config file <
overrides), chains, sweeps naming them, `cnnlab recipes` and `cnnlab train --recipe`."""

import json
import re

import pytest

from cnnlab.cli import main
from cnnlab.config import apply_overrides, from_dict, list_recipes, load_config, recipe_table
from cnnlab.errors import ConfigError
from cnnlab.experiments.spec import spec_from_dict

SHIPPED = {"classic", "rsb-a1", "rsb-a2", "rsb-a3", "speedrun", "fast", "airbench94"}


def test_every_shipped_recipe_resolves():
    recipes = list_recipes()
    assert SHIPPED <= set(recipes) and all(recipes[n] for n in SHIPPED)
    for name in recipes:
        cfg = load_config(recipe=name)
        assert cfg.recipe == name
        for key, value in recipe_table(name).items():
            assert cfg.flat().get(key, cfg.model.args.get(key[6:])) == (
                tuple(value) if isinstance(value, list) and key != "data.augment" else value)
    a3 = load_config(recipe="rsb-a3")
    assert (a3.optim.name, a3.optim.loss, a3.optim.target_threshold) == ("lamb", "bce", 0.2)
    a2 = recipe_table("rsb-a2")  # starts from rsb-a1 and changes what A2 changes
    assert a2["data.aug_repeats"] == 3 and a2["optim.weight_decay"] == 0.02
    assert a2["train.epochs"] == 100 and recipe_table("rsb-a1")["train.epochs"] == 200
    assert recipe_table("speedrun") == recipe_table("fast")
    c = load_config(recipe="classic")
    assert (c.optim.name, c.optim.schedule, c.optim.milestones) == ("sgd", "multistep",
                                                                   (0.5, 0.75))


def test_precedence_recipe_under_file_under_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('recipe = "rsb-a3"\n[optim]\nlr = 0.01\n[train]\nepochs = 7\n')
    cfg = load_config(path, ["train.epochs=2"])
    assert cfg.recipe == "rsb-a3" and cfg.optim.name == "lamb"  # from the recipe
    assert cfg.optim.lr == 0.01 and cfg.train.epochs == 2  # file over recipe, override over file
    other = load_config(path, recipe="classic")  # --recipe replaces the file's recipe
    assert other.optim.name == "sgd" and other.optim.lr == 0.01
    assert from_dict(cfg.to_dict()) == cfg  # a saved config reads back the same
    with pytest.raises(ConfigError, match="not an override"):
        apply_overrides(cfg, {"recipe": "classic"})


def test_recipe_files_chains_and_errors(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('recipe = "classic"\n[optim]\nlr = 0.05\n')
    cfg = load_config(recipe=mine)
    assert cfg.recipe == "mine" and cfg.optim.lr == 0.05 and cfg.optim.schedule == "multistep"
    loop = tmp_path / "loop.toml"
    loop.write_text(f'recipe = "{loop}"\n')
    with pytest.raises(ConfigError, match="starts from itself"):
        load_config(recipe=loop)
    with pytest.raises(ConfigError, match="unknown recipe 'rsb-a4'.*rsb-a"):
        load_config(recipe="rsb-a4")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim]\nname = 'lamb2'\n")
    with pytest.raises(ConfigError, match="recipe 'bad': optim.name"):
        load_config(recipe=bad)


def test_sweep_recipe_axis_goes_under_the_base():
    spec = spec_from_dict({"name": "r", "reps": 1,
                           "base": {"recipe": "classic", "model": {"name": "resnet20"},
                                    "train": {"epochs": 3}},
                           "grid": {"recipe": ["classic", "rsb-a3"]}})
    c0, c1 = (spec.run_config(cell, 0) for cell in spec.cells())
    assert c0.optim.name == "sgd" and c1.optim.name == "lamb" and c1.recipe == "rsb-a3"
    assert c0.train.epochs == c1.train.epochs == 3  # the base wins over each recipe


def test_cli_recipes_lists_what_each_sets(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert f"\n{name}: " in "\n" + out
    assert re.search(r'optim\.name +=  *"lamb"', out)  # key = value lines per recipe
    assert main(["recipes", "rsb-a3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rsb-a3"]["sets"]["data.low_res"] == 24
    assert main(["recipes", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err


def test_cli_train_with_a_recipe(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "resnet20", "--recipe", "rsb-a3", "--data", "digits", "--epochs", "1",
                 "--set", "data.limit=300", "--set", "data.batch_size=64", "--out", str(out),
                 "--quiet"]) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["recipe"] == "rsb-a3" and cfg["optim"]["name"] == "lamb"
    assert cfg["data"]["batch_size"] == 64 and cfg["train"]["epochs"] == 1
    assert (out / "run.toml").read_text().count('recipe = "rsb-a3"') == 1
    capsys.readouterr()
    assert main(["train", "--recipe", "classic", "--data", "digits", "--out",
                 str(tmp_path / "b")]) == 2
    assert "names no model" in capsys.readouterr().err
