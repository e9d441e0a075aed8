"""Augmentor's operations (skew, distortion, equalization, greyscale, invert, zoom) and
``cnnlab augment sample``: identity at zero, seeded, per-sample, and their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.augment import (
    Distort,
    Equalize,
    Grayscale,
    HFlip,
    Invert,
    Pipeline,
    Skew,
    make_op,
)
from cnnlab.data.augment.distort import SKEW_MOVES, SKEW_TYPES, skew_matrix
from cnnlab.data.augment.geometry import affine
from cnnlab.data.augment.sample import sample_images
from cnnlab.data.dataset import ImageSet
from cnnlab.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b: int = 6, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=gen(seed))


# each op at work, and the same op at magnitude / probability zero
AUGMENTOR_OPS = {
    "skew-tilt": ({"op": "skew", "type": "tilt", "magnitude": 0.3}, {"op": "skew", "magnitude": 0}),
    "skew-corner": ({"op": "skew", "type": "corner", "magnitude": 0.3},
                    {"op": "skew", "type": "corner", "magnitude": 0}),
    "distort": ({"op": "distort", "magnitude": 3, "grid": 4}, {"op": "distort", "magnitude": 0}),
    "equalize": ({"op": "histogram_equalisation", "p": 0.5}, {"op": "equalize", "p": 0}),
    "greyscale": ({"op": "greyscale", "p": 0.5}, {"op": "greyscale", "p": 0}),
    "invert": ({"op": "invert", "p": 0.5}, {"op": "invert", "p": 0}),
    "zoom": ({"op": "zoom", "scale": [1.1, 1.6]}, {"op": "zoom", "scale": [1.0, 1.0]}),
}


@pytest.mark.parametrize("name", AUGMENTOR_OPS)
@pytest.mark.parametrize("c", [1, 3])
def test_identity_at_zero_shape_dtype_and_range(name, c):
    on, off = (make_op(t) for t in AUGMENTOR_OPS[name])
    x = batch(8, c)
    assert torch.allclose(off(x, None, gen())[0], x, rtol=0, atol=1e-6), name
    out, _ = on(x, None, gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    if not (name == "greyscale" and c == 1):  # greyscale of one channel is the image
        assert not torch.allclose(out, x, atol=1e-3), name


@pytest.mark.parametrize("name", AUGMENTOR_OPS)
def test_seeded_and_per_sample(name):
    op = make_op(AUGMENTOR_OPS[name][0])
    x = batch(1, seed=3).expand(32, -1, -1, -1).contiguous()  # 32 copies of one image
    a, _ = op(x, None, gen(5))
    assert torch.equal(a, op(x, None, gen(5))[0])
    assert not torch.equal(a, op(x, None, gen(6))[0])
    distinct = {tuple(o.flatten().round(decimals=5).tolist()) for o in a}
    assert len(distinct) > 1, name  # copies of one image get different parameters


def test_skew_maps_the_moved_corners_onto_the_frame():
    h, w = 12, 20
    moves = torch.arange(len(SKEW_MOVES))
    amount = torch.linspace(1, 6, len(moves))
    m = skew_matrix(moves, amount, h, w)  # (12, 3, 3) output point -> input point
    a, b = (w - 1) / 2, (h - 1) / 2
    frame = torch.tensor([[-a, -b], [a, -b], [a, b], [-a, b]])  # TL, TR, BR, BL
    for i, steps in enumerate(SKEW_MOVES.values()):
        moved = frame.clone()
        for corner, dx, dy in steps:
            moved[corner] += amount[i] * torch.tensor([dx, dy])
        p = m[i] @ torch.cat([moved, torch.ones(4, 1)], 1).T  # (3, 4)
        assert torch.allclose((p[:2] / p[2]).T, frame, atol=1e-4), list(SKEW_MOVES)[i]


def test_left_tilt_keeps_the_right_edge_and_samples_inside():
    x = batch(2, 3, 16, 16)
    left = list(SKEW_MOVES).index("left")
    m = skew_matrix(torch.tensor([left, left]), torch.tensor([0.0, 5.0]), 16, 16)
    out = affine(x, m, projective=True)
    assert torch.allclose(out[:, :, :, -1], x[:, :, :, -1], atol=1e-5)  # right edge stays
    assert not torch.allclose(out[1, :, :, 0], x[1, :, :, 0], atol=1e-2)  # left one moves
    ones = affine(torch.ones(2, 1, 16, 16), m, projective=True)
    assert torch.allclose(ones, torch.ones_like(ones), atol=1e-5)  # no padding sampled


def test_skew_draws_only_its_type_within_its_magnitude():
    op = Skew(magnitude=0.25, type="tilt_top_bottom")
    params = op.sample(torch.Size((500, 3, 16, 32)), gen(), None)
    names = {list(SKEW_MOVES)[i] for i in params["move"].tolist()}
    assert names == set(SKEW_TYPES["tilt_top_bottom"])
    assert 0 <= params["amount"].min() and params["amount"].max() <= 0.25 * 32


def test_skew_fuses_with_affine_ops_into_one_projective_resampling():
    x = batch(8)
    pipe = Pipeline([HFlip(p=1.0), Skew(0.3)])
    assert len(pipe.steps) == 1  # one resampling
    fused, _ = pipe(x, None, gen(2))
    g = gen(2)
    HFlip(p=1.0).sample(x.shape, g, None)  # the same draws, in the same order
    sequential, _ = Skew(0.3)(x.flip(-1), None, g)
    assert torch.allclose(fused, sequential, atol=1e-5)


def test_distortion_moves_pixels_by_its_field():
    h, w = 24, 24
    ramp = (torch.arange(w).float() / (w - 1)).expand(4, 1, h, w).contiguous()  # x = j/(W-1)
    op = Distort(magnitude=1.5, grid=3)
    params = op.sample(ramp.shape, gen(), None)
    field = op.field(params, ramp.shape)  # (B, 2, H, W) pixels
    assert field.abs().max() <= 1.5 and field.abs().max() > 0.5
    for edge in (field[..., 0, :], field[..., -1, :], field[..., :, 0], field[..., :, -1]):
        assert torch.allclose(edge, torch.zeros_like(edge), atol=1e-6)  # frame stays
    out, _ = op.apply(ramp, None, params)
    # on a ramp, bilinear sampling at j + dx gives (j + dx) / (W - 1) exactly
    expected = ramp + field[:, :1] / (w - 1)
    assert torch.allclose(out, expected, atol=1e-5)


def test_equalized_histogram_is_near_uniform():
    g = gen()
    # levels 40..200, peaked in the middle (sum of two uniforms): no level holds > 2 %
    u = (torch.rand(3, 2, 64, 64, generator=g) + torch.rand(3, 2, 64, 64, generator=g)) / 2
    x = (40 + 160 * u).round() / 255
    out, _ = Equalize(p=1.0)(x, None, g)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):  # the CDF of a uniform histogram is the identity
        share = ((out * 255).round() <= q * 255).float().flatten(2).mean(-1)  # (B, C)
        assert torch.allclose(share, torch.full_like(share, q), atol=0.02), q
        before = ((x * 255).round() <= q * 255).float().flatten(2).mean(-1)
        assert (before - q).abs().min() > 0.05, q  # it was far from uniform


def test_equalize_takes_channels_last_batches():
    u8 = torch.randint(0, 256, (2, 8, 8, 3), generator=gen(), dtype=torch.uint8)
    x = u8.permute(0, 3, 1, 2).float() / 255  # NHWC strides, as the preview makes them
    assert torch.equal(Equalize(p=1.0)(x, None, gen())[0],
                       Equalize(p=1.0)(x.contiguous(), None, gen())[0])


def test_greyscale_uses_the_601_weights():
    x = batch(4)
    out, _ = Grayscale(p=1.0)(x, None, gen())
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        assert torch.allclose(out[:, c], luma, atol=1e-6)


def test_invert_and_grayscale_follow_their_mask():
    x = batch(64)
    for op, fn in ((Invert(p=0.3), lambda t: 1 - t), (Grayscale(p=0.3), None)):
        params = op.sample(x.shape, gen(4), None)
        out, _ = op.apply(x, None, params)
        mask = params["mask"]
        assert 0 < mask.sum() < 64
        assert torch.equal(out[~mask], x[~mask])
        if fn is not None:
            assert torch.allclose(out[mask], fn(x[mask]))


def test_zoom_is_scale_about_the_centre():
    w = 17
    ramp = (torch.arange(w).float() / (w - 1)).expand(1, 1, w, w).contiguous()
    op = make_op({"op": "zoom", "scale": [2.0, 2.0]})
    out, _ = op(ramp, None, gen())
    u = torch.arange(w).float() - (w - 1) / 2  # centred columns; out(u) = in(u / 2)
    assert torch.allclose(out[0, 0, w // 2], (u / 2 + (w - 1) / 2) / (w - 1), atol=1e-5)


@pytest.mark.parametrize("table,words", [
    ({"op": "skew", "type": "sideways"}, ["'skew'", "type", "tilt, tilt_left_right"]),
    ({"op": "skew", "magnitude": 2}, ["'skew'", "magnitude", "[0, 1]"]),
    ({"op": "distort", "grid": 1}, ["'distort'", "grid must be an integer in [2, 64]"]),
    ({"op": "distort", "grid": [3, 4, 5]}, ["'distort'", "grid must be an integer or a pair"]),
    ({"op": "elastic", "magnitude": -1}, ["'distort'", "magnitude must be a number"]),
])
def test_bad_parameters_give_one_line_errors(table, words):
    with pytest.raises(ConfigError) as err:
        make_op(table)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_config_round_trip():
    for op in (Skew(0.2, type="corner", p=0.5), Distort(2.5, grid=[3, 5])):
        again = make_op(op.config())
        x = batch(4)
        assert torch.equal(op(x, None, gen(1))[0], again(x, None, gen(1))[0])


# -- augment sample ---------------------------------------------------------------------

def image_set(n: int = 30, classes: int = 3) -> ImageSet:
    images = torch.randint(0, 256, (n, 12, 12, 3), generator=gen(), dtype=torch.uint8)
    return ImageSet(images, torch.arange(n) % classes, ["cat", "dog", "a/b"])


def test_sample_images_writes_labelled_pngs(tmp_path):
    data = image_set()
    paths = sample_images(data, [{"op": "skew"}, {"op": "distort"}], 7, tmp_path / "s",
                          seed=1, batch_size=3)
    assert len(paths) == 7 and len(set(paths)) == 7
    for p in paths:
        number, src = p.stem.split("_from_")
        assert p.parent.name == ["cat", "dog", "a_b"][int(data.labels[int(src)])]
        with Image.open(p) as img:
            assert img.format == "PNG" and img.size == (12, 12) and img.mode == "RGB"
    again = sample_images(data, [{"op": "skew"}, {"op": "distort"}], 7, tmp_path / "t",
                          seed=1, batch_size=7)
    assert [p.relative_to(tmp_path / "t") for p in again] == \
        [p.relative_to(tmp_path / "s") for p in paths]  # other batches, the same sources
    plain = sample_images(data, None, 2, tmp_path / "plain", seed=1)
    for p in plain:
        src = int(p.stem.split("_from_")[1])
        with Image.open(p) as img:
            assert torch.equal(torch.from_numpy(np.asarray(img).copy()), data.images[src])


def test_cli_sample_on_digits(tmp_path, capsys):
    out = tmp_path / "aug"
    code = main(["augment", "sample", '[{op="skew", magnitude=0.2}, {op="greyscale", p=0.5}]',
                 "--data", "digits", "-n", "12", "--out", str(out), "--seed", "3",
                 "--device", "cpu", "--quiet"])
    assert code == 0 and "wrote 12 augmented digits images" in capsys.readouterr().out
    files = sorted(out.rglob("*.png"))
    assert len(files) == 12 and all(f.parent.name in "0123456789" for f in files)
    again = tmp_path / "again"
    main(["augment", "sample", '[{op="skew", magnitude=0.2}, {op="greyscale", p=0.5}]',
          "--data", "digits", "-n", "12", "--out", str(again), "--seed", "3", "--device",
          "cpu", "--quiet"])
    assert [f.read_bytes() for f in files] == \
        [f.read_bytes() for f in sorted(again.rglob("*.png"))]  # seeded: the same bytes
    # the samples read back as a folder dataset
    assert main(["data", "info", f"folder:{out}"]) == 0
    assert "12 images" in capsys.readouterr().out.replace("  ", " ").replace("  ", " ")


def test_cli_sample_bad_inputs_write_nothing(tmp_path, capsys):
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.png").write_bytes(b"precious")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    new = tmp_path / "new"
    cases = [
        (["flip", "--data", "digits", "-n", "0", "--out", str(new)], "-n must be >= 1"),
        (["flip", "--data", "digits", "-n", "3", "--out", str(kept)], "is not empty"),
        (["flip", "--data", "digits", "-n", "3", "--out", str(a_file)], "is a file"),
        (['[{op="skwe"}]', "--data", "digits", "-n", "3", "--out", str(new)],
         "did you mean 'skew'"),
        (["flip", "--data", "digitz", "-n", "3", "--out", str(new)], "unknown dataset"),
        (["mixup", "--data", "digits", "-n", "3", "--out", str(new)], "soft labels"),
    ]
    for argv, words in cases:
        code = main(["augment", "sample", *argv, "--device", "cpu", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not new.exists()
    assert [p.name for p in kept.iterdir()] == ["mine.png"]
    assert (kept / "mine.png").read_bytes() == b"precious" and a_file.read_text() == "x"
