"""Geometric augmentation on synthetic images with known answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.augment import (
    Crop,
    HFlip,
    Pipeline,
    ResizedCrop,
    Rotate,
    Scale,
    Shear,
    Translate,
    VFlip,
)
from cnnlab.data.augment.geometry import affine, hflip, identity_matrix, rotate, shift, vflip


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b: int = 6, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=gen(seed))


def test_flip_twice_is_identity():
    x = batch()
    mask = torch.tensor([True, False, True, True, False, False])
    assert torch.equal(hflip(hflip(x, mask), mask), x)
    assert torch.equal(vflip(vflip(x, mask), mask), x)
    op = HFlip(p=0.5)
    params = op.sample(x.shape, gen(1), x.device)
    assert torch.equal(op.apply(op.apply(x, None, params)[0], None, params)[0], x)


def test_flip_touches_exactly_the_flagged_rows():
    x = batch()
    mask = torch.tensor([True, False, True, True, False, False])
    out = hflip(x, mask)
    assert torch.equal(out[mask], torch.flip(x[mask], dims=[-1]))
    assert torch.equal(out[~mask], x[~mask])


@pytest.mark.parametrize("size", [(8, 8), (7, 7), (32, 32)])
@pytest.mark.parametrize("k", [1, 2, 3, -1])
def test_rotation_by_90_equals_rot90(size, k):
    x = batch(4, 3, *size)
    out = rotate(x, 90.0 * k, interpolation="nearest")
    assert torch.equal(out, torch.rot90(x, k, dims=(-2, -1)))


def test_rotation_by_90_is_exact_with_bilinear_on_power_of_two_sizes():
    x = batch(4, 1, 16, 16)
    assert torch.equal(rotate(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)))


def test_rotation_with_per_sample_angles():
    x = batch(4, 1, 8, 8)
    out = rotate(x, torch.tensor([0.0, 90.0, 180.0, 270.0]), interpolation="nearest")
    for i in range(4):
        assert torch.equal(out[i], torch.rot90(x[i], i, dims=(-2, -1)))


def test_translation_moves_a_marked_pixel_by_the_drawn_offset():
    b, h, w = 16, 17, 15
    x = torch.zeros(b, 1, h, w)
    x[:, :, 8, 7] = 1.0  # one marked pixel near the centre
    op = Translate(fraction=0.25)
    params = op.sample(x.shape, gen(3), x.device)
    out, _ = op.apply(x, None, params)
    assert len(set(zip(params["tx"].tolist(), params["ty"].tolist()))) > 1  # per sample
    for i in range(b):
        tx, ty = int(params["tx"][i]), int(params["ty"][i])
        expected = torch.zeros(h, w)
        expected[8 + ty, 7 + tx] = 1.0
        assert torch.equal(out[i, 0], expected), (i, tx, ty)


def test_shift_function_moves_content_right_and_down():
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 1, 2] = 1.0
    out = shift(x, 2.0, 3.0)
    assert out[0, 0, 4, 4] == 1.0 and out.sum() == 1.0


@pytest.mark.parametrize("padding,mode", [("zeros", "constant"), ("reflect", "reflect")])
def test_crop_equals_the_padded_original_at_the_recorded_offset(padding, mode):
    x = batch(8, 3, 12, 10)
    pad = 3
    op = Crop(pad=pad, padding=padding)
    params = op.sample(x.shape, gen(5), x.device)
    out, _ = op.apply(x, None, params)
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    for i in range(len(x)):
        dy, dx = int(params["dy"][i]), int(params["dx"][i])
        window = padded[i, :, pad + dy : pad + dy + 12, pad + dx : pad + dx + 10]
        assert torch.equal(out[i], window)


def test_crops_stay_inside_the_padded_image():
    pad, h, w = 4, 9, 9
    x = batch(24, 1, h, w, seed=2)
    out, _ = Crop(pad=pad)(x, None, gen(8))
    padded = F.pad(x, (pad, pad, pad, pad))
    for i in range(len(x)):  # each output is one window of its padded input, found by search
        windows = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(padded[i, :, dy : dy + h, dx : dx + w], out[i])]
        assert windows, i


def test_fused_integral_ops_equal_sequential_application():
    x = batch(16, 3, 10, 12)
    # flips lose no content, so one fused resampling equals crop-then-flips exactly
    # (two lossy ops, e.g. crop then translate, may show more of the image when fused)
    ops = [Crop(pad=3), HFlip(0.5), VFlip(0.5)]
    pipe = Pipeline(ops)
    assert len(pipe.steps) == 1  # one resampling
    fused, _ = pipe(x, None, gen(4))
    g, seq = gen(4), x
    for op in ops:
        seq, _ = op(seq, None, g)
    assert torch.equal(fused, seq)


def test_reflect_crop_is_not_fused_with_zero_padded_ops():
    pipe = Pipeline([Crop(pad=2, padding="reflect"), HFlip(), Rotate(10)])
    assert [len(s) if isinstance(s, list) else 1 for s in pipe.steps] == [2, 1]


def test_each_sample_gets_its_own_parameters():
    x = batch(1).expand(32, -1, -1, -1).contiguous()  # 32 copies of one image
    for op in (Rotate(30), Shear(20), Scale((0.7, 1.3)), ResizedCrop(), Crop(4), HFlip()):
        out, _ = op(x, None, gen(0))
        distinct = {tuple(o.flatten()[:64].tolist()) for o in out}
        assert len(distinct) > 1, op


def test_identity_parameters_leave_the_image_unchanged():
    x = batch(4, 3, 16, 16)
    assert torch.equal(affine(x, identity_matrix(4)), x)
    assert torch.equal(Scale((1.0, 1.0))(x, None, gen())[0], x)
    assert torch.equal(ResizedCrop(scale=(1, 1), ratio=(1, 1))(x, None, gen())[0], x)
    assert torch.equal(Rotate(0)(x, None, gen())[0], x)


def test_fill_value_pads_outside_the_image():
    x = torch.zeros(1, 1, 4, 4)
    out = shift(x, 2.0, 0.0, fill=0.5)
    assert torch.equal(out[0, 0, :, :2], torch.full((4, 2), 0.5))
    assert torch.equal(out[0, 0, :, 2:], torch.zeros(4, 2))


def test_probability_zero_is_identity_and_one_channel_works():
    x = batch(5, 1, 8, 8)
    for op in (Rotate(30, p=0.0), Crop(4, p=0.0), HFlip(p=0.0), Shear(10, p=0.0)):
        assert torch.allclose(op(x, None, gen())[0], x, atol=1e-6), op


def test_seeded_generator_reproduces_geometry():
    x = batch(8)
    pipe = Pipeline([Crop(4), HFlip(), Rotate(20), Shear(10), ResizedCrop((0.5, 1.0))])
    a, _ = pipe(x, None, gen(11))
    b, _ = pipe(x, None, gen(11))
    c, _ = pipe(x, None, gen(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
