"""Hub: save/load round trips, prediction on image files, export of a run, external libs."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab import ModelError, create_model
from cnnlab.cli import main
from cnnlab.errors import DataError
from cnnlab.models.hub import export_run, load_image, predict, read_card
from cnnlab.models.registry import builder_params


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Move BN statistics away from their defaults, as training would."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, model.in_chans, 32, 32))
    return model.eval()


@pytest.mark.parametrize(("name", "kw"), [
    ("resnet20", {}),
    ("convnext_cifar", {}),
    ("googlenet", {"input_size": 32, "aux_logits": True}),
    ("efficientnet_b0", {"input_size": 32, "norm": "gn"}),
])
def test_round_trip_is_bitwise_equal(tmp_path, name, kw):
    torch.manual_seed(0)
    model = _trained_like(create_model(name, num_classes=5, **kw))
    cnnlab.save_pretrained(model, tmp_path / "m", dataset="toy", classes=list("abcde"),
                           mean=[0.5] * 3, std=[0.25] * 3, metrics={"val_acc": 0.9})
    loaded = cnnlab.load_pretrained(tmp_path / "m")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)


def test_card_contents(tmp_path):
    model = create_model("resnet20", num_classes=3, in_chans=1, width=8)
    cnnlab.save_pretrained(model, tmp_path, dataset="digits", classes=["x", "y", "z"],
                           mean=[0.1], std=[0.3], metrics={"acc": 0.5}, input_size=28)
    card = read_card(tmp_path)
    assert (card["name"], card["args"], card["num_classes"], card["in_chans"]) == \
        ("resnet20", {"width": 8}, 3, 1)
    assert card["input_size"] == [28, 28] and card["image_mode"] == "L"
    assert card["mean"] == [0.1] and card["std"] == [0.3]
    assert card["versions"]["cnnlab"] == cnnlab.__version__
    assert card["versions"]["torch"] == torch.__version__
    assert (tmp_path / "model.safetensors").is_file()


def test_reset_classifier_is_saved(tmp_path):
    model = create_model("resnet20", num_classes=10)
    model.reset_classifier(4)
    cnnlab.save_pretrained(model, tmp_path)
    assert cnnlab.load_pretrained(tmp_path).num_classes == 4


def test_save_errors(tmp_path):
    with pytest.raises(ModelError, match="built by cnnlab.create_model"):
        cnnlab.save_pretrained(torch.nn.Linear(2, 2), tmp_path)
    model = create_model("resnet20", num_classes=3)
    with pytest.raises(ModelError, match="2 class names given for a model with 3 outputs"):
        cnnlab.save_pretrained(model, tmp_path, classes=["a", "b"])
    with pytest.raises(ModelError, match="one value per channel"):
        cnnlab.save_pretrained(model, tmp_path, mean=[0.5, 0.5], std=[1, 1, 1])


def test_load_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        cnnlab.load_pretrained(tmp_path / "nope")
    with pytest.raises(ModelError, match="has no config.json"):
        cnnlab.load_pretrained(tmp_path)
    model = create_model("resnet20", num_classes=3)
    cnnlab.save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_classes"] = 7
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="do not fit 'resnet20'.*shape fc.weight"):
        cnnlab.load_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        cnnlab.load_pretrained(tmp_path)


# --- predict -------------------------------------------------------------------------------


def _images(folder):
    rng = np.random.default_rng(0)
    paths = []

    def save(name, img):
        paths.append(folder / name)
        img.save(paths[-1])

    save("rgba.png", Image.fromarray(rng.integers(0, 256, (45, 71, 4), dtype=np.uint8), "RGBA"))
    save("gray.png", Image.fromarray(rng.integers(0, 256, (13, 9), dtype=np.uint8), "L"))
    save("gray16.png", Image.fromarray(rng.integers(0, 65535, (40, 33), dtype=np.uint16)))
    pal = Image.fromarray(rng.integers(0, 256, (20, 50, 3), dtype=np.uint8)).convert("P")
    pal.info["transparency"] = 0
    save("palette.png", pal)
    save("big.jpg", Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)))
    save("cmyk.jpg", Image.fromarray(rng.integers(0, 256, (31, 31, 3), dtype=np.uint8))
         .convert("CMYK"))
    return paths


@pytest.fixture
def rgb_model_dir(tmp_path):
    torch.manual_seed(0)
    model = _trained_like(create_model("resnet20", num_classes=4, width=8))
    return cnnlab.save_pretrained(model, tmp_path / "model", classes=["cat", "dog", "fox", "owl"],
                                  mean=[0.5] * 3, std=[0.25] * 3, input_size=32)


def test_predict_any_size_and_mode(tmp_path, rgb_model_dir):
    paths = _images(tmp_path)
    results = predict(rgb_model_dir, paths, topk=3)
    assert len(results) == len(paths)
    for top in results:
        assert len(top) == 3 and all(c in ("cat", "dog", "fox", "owl") for c, _ in top)
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert len(predict(rgb_model_dir, paths[:1], topk=10)[0]) == 4  # k capped at classes


def test_predict_grayscale_model(tmp_path):
    model = create_model("lenet5", num_classes=10, in_chans=1)
    folder = cnnlab.save_pretrained(model, tmp_path / "m", input_size=32)
    results = predict(folder, _images(tmp_path), topk=2)
    assert all(c.isdigit() for top in results for c, _ in top)  # no names: indices


def test_load_image_follows_the_card(tmp_path):
    img = Image.new("RGBA", (10, 6), (255, 0, 0, 0))  # fully transparent red
    img.save(tmp_path / "t.png")
    card = {"in_chans": 3, "channels": 3, "input_size": [4, 8], "mean": None, "std": None}
    x = load_image(tmp_path / "t.png", card)
    assert x.shape == (3, 4, 8)
    assert torch.allclose(x, torch.ones_like(x))  # transparency composited on white
    card = {**card, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert torch.allclose(load_image(tmp_path / "t.png", card), torch.ones(3, 4, 8))


def test_predict_errors(tmp_path, rgb_model_dir):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        predict(rgb_model_dir, [tmp_path / "bad.png"])
    with pytest.raises(DataError, match="does not exist"):
        predict(rgb_model_dir, [tmp_path / "missing.png"])
    with pytest.raises(ModelError, match="topk must be >= 1"):
        predict(rgb_model_dir, [], topk=0)


def test_cli_predict(tmp_path, rgb_model_dir, capsys):
    paths = [str(p) for p in _images(tmp_path)[:2]]
    assert main(["predict", str(rgb_model_dir), *paths, "--topk", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == paths[0] and out[1].lstrip().startswith("1. ") and len(out) == 6
    assert main(["predict", str(rgb_model_dir), paths[0], "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["image"] == paths[0] and len(rows[0]["top"]) == 4
    assert main(["predict", str(tmp_path / "nothing"), paths[0]]) == 2
    assert "model folder" in capsys.readouterr().err


# --- export of a training run ------------------------------------------------------------------


def _fake_run(folder, name="resnet20", args=None, size=32, channels=3, prefix="",
              record_built=True, normalize=True):
    """A run folder in the trainer's format (train/run.py): config.json, summary.json,
    checkpoints/*.pt. Like the trainer, the model gets input_size=H when its builder takes
    one; config.model keeps what the user set, the top-level "model" what built it."""
    args = dict(args or {})
    classes = ["zero", "one", "two"]
    torch.manual_seed(1)
    build_args = dict(args)
    if "input_size" in builder_params(name):
        build_args.setdefault("input_size", size)
    model = _trained_like(create_model(name, num_classes=3, in_chans=channels, **build_args))
    (folder / "checkpoints").mkdir(parents=True)
    config = {
        "config": {"data": {"spec": "digits", "normalize": normalize},
                   "model": {"name": name, **args}, "optim": {"lr": 0.1},
                   "train": {"epochs": 2}},
        "dataset": {"name": "digits", "classes": classes, "mean": [0.2] * channels,
                    "std": [0.3] * channels, "image_shape": [size, size, channels],
                    "num_classes": 3},
    }
    if record_built:
        config["model"] = {"name": name, "args": model.model_args}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "summary.json").write_text(json.dumps({"best_val_acc": 0.75, "epochs": 2}))
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save({"model": state, "epoch": 2}, folder / "checkpoints" / "best.pt")
    torch.save({"model": state, "epoch": 2}, folder / "checkpoints" / "last.pt")
    return model


def test_export_run_then_load_and_predict(tmp_path):
    model = _fake_run(tmp_path / "run", args={"width": 8})
    out = export_run(tmp_path / "run", tmp_path / "exported")
    card = read_card(out)
    assert card["classes"] == ["zero", "one", "two"] and card["dataset"] == "digits"
    assert card["metrics"] == {"best_val_acc": 0.75, "epochs": 2}
    assert card["mean"] == [0.2] * 3 and card["input_size"] == [32, 32]
    assert card["checkpoint"] == "best"
    card = read_card(cnnlab.export_run(tmp_path / "run", tmp_path / "exported"))
    training = card["training"]  # the settings that differ from cnnlab's defaults
    assert training["recipe"] == {"model.name": "resnet20", "model.width": 8,
                                  "optim.lr": 0.1, "train.epochs": 2}
    assert training["data"]["spec"] == "digits" and training["data"]["split_seed"] == 0
    assert "`optim.lr = 0.1`" in (out / "README.md").read_text()
    loaded = cnnlab.load_pretrained(out)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    img = tmp_path / "x.png"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(img)
    assert len(predict(out, [img], topk=1)[0]) == 1


def test_export_compiled_and_size_aware_run(tmp_path):
    """Keys prefixed by torch.compile; a run folder without the built model's record (its
    MobileNet's small stem differs from the ImageNet one only in strides, so the export
    must give the builder the image size as the trainer did); no normalization."""
    model = _fake_run(tmp_path / "run", name="mobilenet_v2", args={"width_mult": 0.25},
                      prefix="_orig_mod.", normalize=False, record_built=False)
    out = export_run(tmp_path / "run", tmp_path / "out", which="last")
    card = read_card(out)
    assert card["args"] == {"width_mult": 0.25, "input_size": 32}
    assert card["mean"] is None and card["checkpoint"] == "last"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), cnnlab.load_pretrained(out)(x))


def test_cli_export_and_errors(tmp_path, capsys):
    _fake_run(tmp_path / "run", channels=1)
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    assert "exported resnet20" in capsys.readouterr().out
    assert read_card(tmp_path / "out")["image_mode"] == "L"
    (tmp_path / "run" / "checkpoints" / "best.pt").unlink()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "o2")]) == 2
    assert "try --which last" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "o3")]) == 2
    assert "run folder" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"junk")
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "o4"), "--which", "last"]) == 2
    assert "cannot read weights" in capsys.readouterr().err


# --- external libraries ------------------------------------------------------------------------


@pytest.mark.parametrize("lib", ["timm", "torchvision"])
def test_external_library_missing(lib):
    if importlib.util.find_spec(lib) is not None:
        model = create_model(f"{lib}:resnet18", num_classes=3)
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
        return
    with pytest.raises(ModelError, match=f"needs the '{lib}' package.*pip install {lib}"):
        create_model(f"{lib}:resnet18", num_classes=3)


def test_unknown_external_source():
    with pytest.raises(ModelError, match="unknown model source in 'keras:resnet'"):
        create_model("keras:resnet")


def test_cli_predict_several_files_some_bad(tmp_path, rgb_model_dir, capsys):
    good = [str(p) for p in _images(tmp_path)[:2]]
    (tmp_path / "notanimage.txt").write_text("hello")
    (tmp_path / "adir").mkdir()
    bad = [str(tmp_path / "missing.jpg"), str(tmp_path / "notanimage.txt"), str(tmp_path / "adir")]
    files = [good[0], bad[0], bad[1], bad[2], good[1]]
    assert main(["predict", str(rgb_model_dir), *files, "--topk", "1"]) == 1
    cap = capsys.readouterr()
    assert cap.err.splitlines() == [
        f"cnnlab: error: {bad[0]}: no such file",
        f"cnnlab: error: {bad[1]}: not an image (Pillow cannot decode it)",
        f"cnnlab: error: {bad[2]}: is a folder, not an image file"]
    assert cap.out.splitlines()[0::2] == good  # the good files are still predicted
    assert main(["predict", str(rgb_model_dir), *files, "--json"]) == 1
    cap = capsys.readouterr()
    rows = json.loads(cap.out)
    assert [r["image"] for r in rows] == files and len(cap.err.splitlines()) == 3
    assert rows[1] == {"image": bad[0], "error": "no such file"} and len(rows[4]["top"]) == 4
    assert main(["predict", str(rgb_model_dir), *bad]) == 2  # all failed
    cap = capsys.readouterr()
    assert cap.out == "" and len(cap.err.splitlines()) == 3 and "Traceback" not in cap.err
