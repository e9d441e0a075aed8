"""Colour and pixel-value augmentation against their definitions (and Pillow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from cnnlab.data.augment import (
    Cutout,
    GaussianNoise,
    Grayscale,
    Invert,
    Posterize,
    RandomErasing,
)
from cnnlab.data.augment.color import (
    autocontrast,
    brightness,
    contrast,
    equalize,
    grayscale,
    hue,
    invert,
    posterize,
    saturation,
    sharpness,
    solarize,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def levels(b: int = 4, c: int = 3, h: int = 9, w: int = 11, seed: int = 0) -> torch.Tensor:
    """uint8 (B, C, H, W) test images."""
    return torch.randint(0, 256, (b, c, h, w), generator=gen(seed), dtype=torch.uint8)


def as_float(u8: torch.Tensor) -> torch.Tensor:
    return u8.float() / 255


def as_levels(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def pil(u8_chw: torch.Tensor) -> Image.Image:
    arr = u8_chw.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def from_pil(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def test_invert_twice_is_identity():
    u8 = levels()
    x = as_float(u8)
    # 1 - (1 - x) rounds in float32 for x < 0.5: identity to 1 ulp, exact in 8-bit levels
    assert torch.allclose(invert(invert(x)), x, rtol=0, atol=2**-24)
    assert torch.equal(as_levels(invert(invert(x))), u8)
    assert torch.equal(as_levels(invert(x)), 255 - u8)
    op = Invert(p=0.5)
    params = op.sample(x.shape, gen(), x.device)
    twice = op.apply(op.apply(x, None, params)[0], None, params)[0]
    assert torch.equal(as_levels(twice), u8)
    assert torch.equal(twice[~params["mask"]], x[~params["mask"]])


@pytest.mark.parametrize("threshold", [0, 1, 77, 128, 255])
def test_solarize_matches_its_definition(threshold):
    u8 = levels()
    out = as_levels(solarize(as_float(u8), threshold / 255))
    expected = torch.where(u8 >= threshold, 255 - u8, u8)
    assert torch.equal(out, expected)


def test_solarize_matches_pillow():
    u8 = levels(1)
    out = as_levels(solarize(as_float(u8), 100 / 255))
    assert torch.equal(out[0], from_pil(ImageOps.solarize(pil(u8[0]), 100)))


@pytest.mark.parametrize("bits", [1, 2, 4, 7, 8])
def test_posterize_matches_its_definition(bits):
    u8 = levels()
    out = as_levels(posterize(as_float(u8), bits))
    assert torch.equal(out, u8 & (0xFF << (8 - bits)) & 0xFF)
    assert torch.equal(out[0], from_pil(ImageOps.posterize(pil(u8[0]), bits)))


def test_posterize_per_sample_bits():
    u8 = levels(4)
    bits = torch.tensor([1, 3, 5, 8])
    out = as_levels(posterize(as_float(u8), bits))
    for i, b in enumerate(bits.tolist()):
        assert torch.equal(out[i], u8[i] & (0xFF << (8 - b)) & 0xFF)
    assert torch.equal(as_levels(Posterize(bits=8)(as_float(u8), None, gen())[0]), u8)


@pytest.mark.parametrize("c", [1, 3])
def test_equalize_matches_pillow(c):
    u8 = levels(3, c, 16, 12)
    u8[1] = u8[1] // 64 + 100  # few levels
    u8[2] = 42  # a flat image stays as it is
    out = as_levels(equalize(as_float(u8)))
    for i in range(len(u8)):
        assert torch.equal(out[i], from_pil(ImageOps.equalize(pil(u8[i])))), i


def test_autocontrast_stretches_each_channel():
    u8 = levels(3, 3, 8, 8) // 4 + 60  # levels 60..123
    u8[2, 1] = 77  # a flat channel stays as it is
    out = autocontrast(as_float(u8))
    lo, hi = out.amin((2, 3)), out.amax((2, 3))
    assert torch.allclose(lo[:2], torch.zeros(2, 3)) and torch.allclose(hi[:2], torch.ones(2, 3))
    assert torch.equal(out[2, 1], as_float(u8)[2, 1])
    ref = from_pil(ImageOps.autocontrast(pil(u8[0])))  # Pillow rounds through a table
    assert (as_levels(out[0]).int() - ref.int()).abs().max() <= 1


def test_enhancements_at_factor_one_are_identity_and_zero_is_degenerate():
    x = as_float(levels())
    for fn in (brightness, contrast, saturation, sharpness):
        assert torch.allclose(fn(x, torch.ones(len(x))), x, atol=1e-6), fn.__name__
    assert torch.equal(brightness(x, 0.0), torch.zeros_like(x))
    gray = grayscale(x)
    assert torch.allclose(saturation(x, torch.zeros(len(x))), gray, atol=1e-6)
    flat = contrast(x, torch.zeros(len(x)))
    assert torch.allclose(flat, gray.mean((1, 2, 3), keepdim=True).expand_as(x), atol=1e-6)


def test_enhancements_follow_pillow():
    u8 = levels(1, 3, 16, 16)
    img, x = pil(u8[0]), as_float(u8)
    cases = [(brightness, ImageEnhance.Brightness), (contrast, ImageEnhance.Contrast),
             (saturation, ImageEnhance.Color), (sharpness, ImageEnhance.Sharpness)]
    for fn, enhancer in cases:
        for f in (0.3, 1.7):
            ours = as_levels(fn(x, torch.tensor([f])))[0].int()
            ref = from_pil(enhancer(img).enhance(f)).int()
            # Pillow rounds intermediate images to 8 bits (and uses an integer mean)
            assert (ours - ref).abs().float().mean() < 1.5, (fn.__name__, f)


def test_colour_ops_degrade_on_one_channel():
    x = as_float(levels(3, 1))
    assert torch.equal(grayscale(x), x)
    assert torch.equal(saturation(x, torch.zeros(3)), x)
    assert torch.equal(hue(x, torch.full((3,), 0.25)), x)
    assert torch.equal(Grayscale(p=1.0)(x, None, gen())[0], x)


def test_grayscale_gives_equal_channels():
    x = as_float(levels())
    out = grayscale(x, torch.tensor([True, False, True, False]))
    assert torch.equal(out[0, 0], out[0, 1]) and torch.equal(out[0, 1], out[0, 2])
    assert torch.equal(out[1], x[1])


def test_hue_rotation():
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    green = hue(red, torch.tensor([1 / 3]))
    assert torch.allclose(green[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)
    x = as_float(levels())
    assert torch.allclose(hue(x, torch.zeros(len(x))), x, atol=1e-5)
    back = hue(hue(x, torch.full((len(x),), 0.2)), torch.full((len(x),), -0.2))
    assert torch.allclose(back, x, atol=1e-5)


@pytest.mark.parametrize("shift", [0.1, -0.3, 0.45])
def test_hue_matches_colorsys(shift):
    import colorsys

    x = as_float(levels(2, 3, 4, 5))
    out = hue(x, torch.full((2,), shift))
    for b, i, j in [(0, 0, 0), (0, 3, 4), (1, 2, 1), (1, 1, 3)]:
        h, s_, v = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
        expected = colorsys.hsv_to_rgb((h + shift) % 1.0, s_, v)
        assert torch.allclose(out[b, :, i, j], torch.tensor(expected), atol=1e-5)


def test_cutout_and_erasing_fill_one_box_per_sample():
    x = torch.ones(16, 3, 10, 10)
    out, _ = Cutout(size=0.4, fill=0.0)(x, None, gen(1))
    erased = (out == 0).all(1)  # (B, H, W)
    for i in range(16):
        rows, cols = erased[i].any(1), erased[i].any(0)
        assert erased[i].sum() == rows.sum() * cols.sum()  # a rectangle
        assert 0 < rows.sum() <= 4 and 0 < cols.sum() <= 4
    op = RandomErasing(p=1.0, fill="random")
    params = op.sample(x.shape, gen(2), x.device)
    out, _ = op.apply(x, None, params)
    y0, x0, y1, x1 = params["box"]
    for i in range(16):
        inside = out[i, :, y0[i]:y1[i], x0[i]:x1[i]]
        assert (inside < 1).float().mean() > 0.9
        assert (out[i] < 1).sum() == inside.numel() - (inside == 1).sum()


def test_noise_is_per_sample_and_reproducible():
    x = torch.full((4, 3, 8, 8), 0.5)
    a, _ = GaussianNoise(std=0.1)(x, None, gen(3))
    b, _ = GaussianNoise(std=0.1)(x, None, gen(3))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    assert 0.05 < (a - x).std() < 0.15 and a.min() >= 0 and a.max() <= 1
