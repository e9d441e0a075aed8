"""The Hub layout (config.json, model.safetensors, README.md) and the sources of
``create_model(name, pretrained=...)``: folders, files, hf-hub ids (a stand-in
huggingface_hub module, no network), shipped tags."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

import cnnlab
from cnnlab import ModelError
from cnnlab.models import weights
from cnnlab.models.hub import read_card


def _model(classes: int = 3):
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet20", num_classes=classes, width=4)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))  # BN statistics off their defaults
    return model.eval()


def _save(model, folder):
    return cnnlab.save_pretrained(
        model, folder, dataset="toy", classes=["a", "b", "c"], mean=[0.5] * 3, std=[0.25] * 3,
        metrics={"test_acc": 0.8125, "best_val_acc": 0.75},
        training={"recipe": {"optim.lr": 0.2}, "seed": 3, "command": "cnnlab train resnet20",
                  "data": {"spec": "digits"}})


def test_hub_layout_round_trip(tmp_path):
    model = _model()
    folder = _save(model, tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                       "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet20" and config["num_classes"] == 3
    assert config["model_args"] == {"width": 4} and config["label_names"] == ["a", "b", "c"]
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert config["pretrained_cfg"]["mean"] == [0.5] * 3
    assert config["cnnlab"]["training"]["seed"] == 3
    readme = (folder / "README.md").read_text()
    assert readme.startswith("---\nlibrary_name: cnnlab")
    for text in ("81.25 %", "`optim.lr = 0.2`", "seed: 3", "cnnlab train resnet20", "toy"):
        assert text in readme
    loaded = cnnlab.load_pretrained(folder)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.card["metrics"]["test_acc"] == 0.8125


def test_legacy_card_json_still_loads(tmp_path):
    model = _model()
    folder = _save(model, tmp_path / "m")
    card = read_card(folder)
    (folder / "config.json").unlink()
    (folder / "README.md").unlink()
    (folder / "card.json").write_text(json.dumps({**card, "format_version": 1}))
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        assert torch.equal(cnnlab.load_pretrained(folder)(x), model(x))


def test_run_folder_is_not_a_model_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"config": {}, "dataset": {}}))
    with pytest.raises(ModelError, match="cnnlab export"):
        cnnlab.load_pretrained(tmp_path)


def test_create_model_pretrained_folder_and_file(tmp_path):
    model = _model()
    folder = _save(model, tmp_path / "m")
    x = torch.randn(2, 3, 32, 32)
    same = cnnlab.create_model("resnet20", pretrained=str(folder)).eval()
    assert same.num_classes == 3 and same.card["classes"] == ["a", "b", "c"]
    new_head = cnnlab.create_model("resnet20", pretrained=folder, num_classes=5).eval()
    with torch.no_grad():
        assert torch.equal(same(x), model(x))
        assert new_head(x).shape == (2, 5)
        assert torch.equal(new_head.forward_features(x), model.forward_features(x))
    # a bare file: the builder arguments come from the caller
    file_model = cnnlab.create_model("resnet20", width=4,
                                     pretrained=str(folder / "model.safetensors")).eval()
    with torch.no_grad():
        assert torch.equal(file_model(x), model(x))
    with pytest.raises(ModelError, match="are for 'resnet20', not 'resnet32'"):
        cnnlab.create_model("resnet32", pretrained=str(folder))
    with pytest.raises(ModelError, match="do not fit 'resnet20'"):  # width 16, not 4
        cnnlab.create_model("resnet20", pretrained=str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="no model folder or shipped tag 'cifar10-resnet2'"):
        cnnlab.create_model("resnet20", pretrained="cifar10-resnet2")


def _fake_hub(monkeypatch, snapshot):
    module = types.ModuleType("huggingface_hub")
    module.snapshot_download = snapshot
    module.constants = types.SimpleNamespace(HF_HUB_CACHE="/cache/hf/hub")
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)


def test_hf_hub_through_the_cache(tmp_path, monkeypatch):
    model = _model()
    folder = _save(model, tmp_path / "snapshot")
    asked = []

    def snapshot(repo, allow_patterns=None):
        asked.append((repo, tuple(allow_patterns)))
        return str(folder)

    _fake_hub(monkeypatch, snapshot)
    loaded = cnnlab.create_model("resnet20", pretrained="hf-hub:someone/r20").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert asked[0][0] == "someone/r20" and "model.safetensors" in asked[0][1]


def test_hf_hub_offline_and_missing(monkeypatch):
    class LocalEntryNotFoundError(Exception):
        pass

    def offline(repo, allow_patterns=None):
        raise LocalEntryNotFoundError("offline")

    _fake_hub(monkeypatch, offline)
    with pytest.raises(ModelError) as e:
        cnnlab.load_pretrained("hf-hub:someone/r20")
    message = str(e.value)
    assert "/cache/hf/hub" in message and "huggingface-cli download someone/r20" in message
    assert "\n" not in message
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    monkeypatch.setenv("HF_HUB_CACHE", "/somewhere/hub")
    with pytest.raises(ModelError, match="pip install huggingface_hub.*/somewhere/hub"):
        cnnlab.load_pretrained("hf-hub:someone/r20")
    with pytest.raises(ModelError, match="hf-hub:owner/repo"):
        cnnlab.load_pretrained("hf-hub:no-slash")


def test_pretrained_true_without_shipped_weights():
    with pytest.raises(ModelError, match="ships no weights for 'resnet56'"):
        cnnlab.create_model("resnet56", pretrained=True)


def test_shipped_tags_are_complete_and_small():
    shipped = weights.list_pretrained()
    assert shipped, "cnnlab ships at least one pretrained entry"
    for tag, card in shipped.items():
        folder = weights.SHIPPED_DIR / tag
        assert (folder / "README.md").is_file()
        assert (folder / "model.safetensors").stat().st_size <= 2 * 1024 * 1024
        training = card["training"]
        assert training["seed"] is not None and training["command"]
        assert card["metrics"]["test_acc"] > 0.1
        assert weights.default_tag(card["name"]) in shipped
