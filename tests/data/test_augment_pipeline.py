"""RandAugment, pipelines, presets and the data.augment configuration."""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import load_config
from cnnlab.data.augment import (
    OPS,
    PRESETS,
    Crop,
    FlipCrop,
    HFlip,
    Pipeline,
    RandAugment,
    Rotate,
    build_pipeline,
    make_op,
)
from cnnlab.data.augment.geometry import rotation_matrix, shift_matrix
from cnnlab.data.augment.randaugment import _color
from cnnlab.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 16, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    u8 = torch.randint(0, 256, (b, c, size, size), generator=gen(seed), dtype=torch.uint8)
    return u8.float() / 255


def test_randaugment_colour_ops_equal_per_sample_application():
    ops = ["identity", "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
           "autocontrast", "equalize"]
    ra = RandAugment(n=3, m=13, random_magnitude=True, ops=ops)
    x = images(24)
    params = ra.sample(x.shape, gen(1), x.device)
    out, _ = ra(x, None, gen(1))
    for i in range(len(x)):
        xi = x[i : i + 1]
        for choice, level in params["layers"]:
            xi = _color(ops[int(choice[i])], xi, level[i : i + 1])
        assert torch.allclose(out[i : i + 1], xi, atol=1e-6), i
    chosen = {int(c) for choice, _ in params["layers"] for c in choice}
    assert len(chosen) > 4  # samples draw their own ops


def test_randaugment_geometry_is_one_map_per_sample():
    ra = RandAugment(n=1, m=30, ops=["rotate", "translate_x"])
    x = images(8)
    params = ra.sample(x.shape, gen(2), x.device)
    m = ra.matrix(params, x.shape)
    choice, level = params["layers"][0]
    for i in range(8):
        if choice[i] == 0:
            expected = rotation_matrix(30 * level[i : i + 1])
        else:
            expected = shift_matrix(150 / 331 * 16 * level[i : i + 1], torch.zeros(1))
        assert torch.allclose(m[i : i + 1], expected, atol=1e-6)
    assert set(level.abs().tolist()) == {1.0} and set(level.sign().tolist()) == {-1.0, 1.0}


def test_randaugment_is_reproducible_and_in_range():
    x = images(32)
    a, _ = RandAugment(2, 9)(x, None, gen(3))
    b, _ = RandAugment(2, 9)(x, None, gen(3))
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    skip, _ = RandAugment(2, 9, p=0.0)(x, None, gen(3))
    assert torch.allclose(skip, x, atol=1e-6)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("channels", [1, 3])
def test_presets_run_on_grayscale_and_colour(preset, channels):
    pipe = build_pipeline(preset, num_classes=10, image_size=32)
    if preset == "none":
        assert pipe is None
        return
    x, y = images(8, channels, 32), torch.arange(8)
    out, yo = pipe(x, y, gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    if preset in ("mixup", "cutmix", "modern"):
        assert yo.shape == (8, 10) and torch.allclose(yo.sum(1), torch.ones(8))
    else:
        assert torch.equal(yo, y)


def test_flip_crop_preset_scales_with_image_size_and_is_one_resampling():
    pipe = build_pipeline("flip-crop", 10, image_size=64)
    assert isinstance(pipe.ops[0], Crop) and pipe.ops[0].pad == 8
    assert len(pipe.steps) == 1
    modern = build_pipeline("modern", 10, 32)
    assert [len(s) if isinstance(s, list) else 1 for s in modern.steps] == [3, 1]


def test_legacy_flip_crop_api():
    from cnnlab.data.augment.geometry import flip_mask, hflip, random_crop, random_hflip, translate

    x = images(4)
    out, y = FlipCrop(pad=2)(x, torch.arange(4), gen())
    assert out.shape == x.shape and torch.equal(y, torch.arange(4))
    assert repr(FlipCrop(pad=2)) == "FlipCrop(pad=2, flip_p=0.5, mode='constant')"
    assert FlipCrop(pad=2, mode="reflect").ops[0].padding == "reflect"
    assert random_hflip(x, gen()).shape == x.shape and flip_mask(4, 0.5, gen()).dtype == torch.bool
    cropped, dy, dx = random_crop(x, gen(), pad=2)
    assert torch.equal(cropped, translate(x, dy, dx, 2))
    # the fused FlipCrop draws and computes exactly what gather-crop then flip did
    for mode in ("constant", "reflect"):
        g = gen(7)
        expected = random_hflip(random_crop(x, g, 2, mode)[0], g, 0.5)
        assert torch.equal(FlipCrop(2, 0.5, mode)(x, None, gen(7))[0], expected)
    assert torch.equal(hflip(x, torch.ones(4, dtype=torch.bool)), x.flip(-1))


def test_op_tables_and_magnitude():
    pipe = build_pipeline([{"op": "hflip", "p": 0.5}, {"op": "crop", "pad": 4},
                           {"op": "randaugment", "n": 2, "m": 9}, {"op": "mixup", "alpha": 0.2}],
                          num_classes=10)
    assert [type(op).__name__ for op in pipe] == ["HFlip", "Crop", "RandAugment", "MixUp"]
    assert make_op({"op": "rotate", "magnitude": 20}).degrees == (-20.0, 20.0)
    assert make_op({"op": "Random-Crop", "magnitude": 3}).pad == 3  # alias, case, hyphens
    assert make_op("equalize").p == 1.0
    both = build_pipeline(["flip-crop", {"op": "cutout", "size": 0.25}], 10)
    assert [op.name for op in both] == ["crop", "hflip", "cutout"]


def test_config_round_trip_gives_the_same_batches():
    pipe = build_pipeline("modern", num_classes=10)
    again = build_pipeline(pipe.config(), num_classes=10)
    x, y = images(8, 3, 32), torch.arange(8)
    a, b = pipe(x, y, gen(4)), again(x, y, gen(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("spec,words", [
    ([{"op": "hfilp"}], ["unknown op 'hfilp'", "did you mean 'hflip'", "allowed:"]),
    ([{"op": "crop", "padd": 4}], ["'crop'", "unknown parameter 'padd'", "did you mean 'pad'"]),
    ([{"op": "crop", "pad": -1}], ["'crop'", "pad must be an integer >= 0"]),
    ([{"op": "rotate", "degrees": "a lot"}], ["'rotate'", "degrees"]),
    ([{"op": "randaugment", "ops": ["rotat"]}], ["did you mean 'rotate'"]),
    ([{"op": "mixup", "alpha": 0}], ["'mixup'", "alpha must be > 0"]),
    ([{"op": "crop", "padding": "mirror"}], ["'crop'", "padding", "zeros, reflect, border"]),
    ([{"pad": 4}], ["'op' key"]),
    ("modren", ["'modren' is not a known preset", "did you mean 'modern'"]),
    (42, ["must be a preset name or a list"]),
])
def test_bad_specs_give_one_line_config_errors(spec, words):
    with pytest.raises(ConfigError) as err:
        build_pipeline(spec, num_classes=10)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_every_op_builds_from_its_name_and_runs():
    x, y = images(6), torch.arange(6)
    for name in OPS:
        out, _ = make_op(name, num_classes=10)(x, y, gen())
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1, name


def test_pipeline_from_toml_file_and_run_config(tmp_path):
    path = tmp_path / "aug.toml"
    path.write_text('augment = [{op = "hflip", p = 0.5}, {op = "rotate", degrees = 10}]\n')
    pipe = build_pipeline(str(path), 10)
    assert [op.name for op in pipe] == ["hflip", "rotate"] and pipe.name == "aug"
    run = tmp_path / "run.toml"
    run.write_text('[data]\naugment = [{op = "crop", pad = 2}, "flip"]\n')
    assert [op.name for op in build_pipeline(str(run), 10)] == ["crop", "hflip"]
    cfg = load_config(run, overrides=["data.augment=modern"])
    assert len(build_pipeline(cfg.data.augment, 10)) == 4
    cfg = load_config(None, overrides=['data.augment=[{op="cutmix", alpha=0.5}]'])
    assert build_pipeline(cfg.data.augment, 10).ops[0].alpha == 0.5
    with pytest.raises(ConfigError, match="no 'augment' key"):
        (tmp_path / "empty.toml").write_text("x = 1\n")
        build_pipeline(str(tmp_path / "empty.toml"), 10)
    with pytest.raises(ConfigError, match="not found"):
        build_pipeline(str(tmp_path / "missing.toml"), 10)


def test_none_and_callables():
    for spec in (None, "", "none", "None", [], False):
        assert build_pipeline(spec, 10) is None
    pipe = Pipeline([HFlip(), Rotate(5)])
    assert build_pipeline(pipe, 10) is pipe
    assert "HFlip(p=0.5)" in repr(pipe)
