"""The preview grid and ``cnnlab augment preview``."""

from __future__ import annotations

import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.augment.preview import augment_examples, caption, pick, preview_grid
from cnnlab.data.dataset import ImageSet


def image_set(n: int = 60, c: int = 3, classes: int = 5) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 16, 16, c), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.arange(n) % classes, [f"class{i}" for i in range(classes)])


def test_pick_prefers_distinct_classes():
    data = image_set()
    idx = pick(data, 4, seed=0)
    assert len(set(data.labels[idx].tolist())) == 4
    assert torch.equal(idx, pick(data, 4, seed=0))


def test_captions_for_hard_and_soft_labels():
    classes = ["cat", "dog", "ship"]
    assert caption(torch.tensor(1), classes) == "dog"
    assert caption(torch.tensor([0.62, 0.38, 0.0]), classes) == "0.62 cat\n0.38 dog"
    assert caption(torch.tensor([0.0, 0.0, 1.0]), classes) == "ship"


def test_examples_for_a_mixing_pipeline():
    data = image_set()
    ex = augment_examples(data, "modern", n=3, k=5, seed=1)
    assert ex.originals.shape == (3, 3, 16, 16) and ex.augmented.shape == (3, 5, 3, 16, 16)
    assert len(ex.captions) == 3 and all(len(row) == 5 for row in ex.captions)
    soft = [c for row in ex.captions for c in row if "\n" in c]
    assert soft  # mixed labels are spelled out
    for c in soft:
        weights = [float(line.split()[0]) for line in c.splitlines()]
        assert 0.95 <= sum(weights) <= 1.0001


def test_preview_grid_writes_a_png(tmp_path):
    out = preview_grid(image_set(c=1), "randaugment", tmp_path / "sub" / "grid.png", n=2, k=3)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > img.height > 100


def test_cli_preview_on_digits(tmp_path, capsys):
    out = tmp_path / "digits.png"
    code = main(["augment", "preview", "--data", "digits", "--pipeline", "cutmix",
                 "--out", str(out), "--n", "2", "--k", "3"])
    assert code == 0 and out.is_file()
    assert "wrote" in capsys.readouterr().out


def test_cli_preview_inline_list_and_errors(tmp_path, capsys):
    out = tmp_path / "inline.png"
    code = main(["augment", "preview", "--data", "digits", "--out", str(out), "--n", "1",
                 "--k", "2", "--pipeline", '[{op="rotate", degrees=30}]'])
    assert code == 0 and out.is_file()
    capsys.readouterr()
    code = main(["augment", "preview", "--data", "digits", "--pipeline", "modren",
                 "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'modern'" in err and len(err.strip().splitlines()) == 1
