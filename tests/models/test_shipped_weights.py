"""The shipped CIFAR-10 weights: offline by tag, and on a held-out slice they reach the
accuracy their card states (the slice comes from the CIFAR-10 JPEG archive in
../shared/data, skipped where it is absent, as on a user's machine)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main

TAG = "cifar10-resnet20"
ARCHIVE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                       "cifar10-train.tar.gz")
SLICE = 500
# 500 images: one standard error of an accuracy near 0.7 is 0.02; the card of a run with
# test-time augmentation states its accuracy with it (about 1 point above a plain pass)
TOLERANCE = 0.05


def test_tag_loads_offline_and_predicts(tmp_path, capsys):
    model = cnnlab.create_model("resnet20", pretrained=TAG)
    assert model.card["name"] == "resnet20" and len(model.card["classes"]) == 10
    again = cnnlab.create_model("resnet20", pretrained=True)  # the default tag
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), again.eval()(x))
    img = tmp_path / "some.png"
    Image.fromarray(np.full((40, 40, 3), 128, dtype=np.uint8)).save(img)
    assert main(["predict", TAG, str(img), "--topk", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(img) and len(out) == 4
    assert out[1].split()[1] in model.card["classes"]


@pytest.mark.shared
@pytest.mark.skipif(not os.path.isfile(ARCHIVE), reason=f"{ARCHIVE} is absent")
@pytest.mark.parametrize("tag", sorted(cnnlab.list_pretrained()))
def test_shipped_weights_reach_their_card_accuracy(tag):
    from cnnlab.config import load_config
    from cnnlab.train.run import prepare_data

    model = cnnlab.load_pretrained(tag)
    card = model.card
    data = card["training"]["data"]
    # the card's run carved its test split with cnnlab's defaults (seeded): the same here
    cfg = load_config(overrides=[f"data.spec='folder:{os.path.abspath(ARCHIVE)}'",
                                 f"data.split_seed={data['split_seed']}"])
    test = prepare_data(cfg).test
    assert len(test) == data["sizes"]["test"]
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(test), generator=g)[:SLICE]
    x = test.images[pick].permute(0, 3, 1, 2).float().div(255)  # (N, C, H, W) in [0, 1]
    mean = torch.tensor(card["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(card["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        pred = model((x - mean) / std).argmax(1)
    acc = (pred == test.labels[pick]).float().mean().item()
    assert abs(acc - card["metrics"]["test_acc"]) <= TOLERANCE, (acc, card["metrics"])
