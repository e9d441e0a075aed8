"""The extension points of cnnlab.data: the op and source registries (import rules:
tests/test_imports.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.augment import OPS, Op, augbase, build_pipeline, make_op, register_op
from cnnlab.data.augment.randaugment import RandAugment
from cnnlab.data.dataset import Dataset, ImageSet
from cnnlab.data.sources import known_specs, parse_spec, register_source, registry
from cnnlab.errors import ConfigError, DataError


@pytest.fixture
def clean_registries():
    """Registrations made by a test are forgotten afterwards."""
    saved = [(d, dict(d)) for d in (augbase.OPS, augbase.ALIASES, augbase._ORDER,
                                    registry._REGISTRY)]
    yield
    for d, items in saved:
        d.clear()
        d.update(items)


def test_listing_sources_needs_no_torch():
    code = ("import sys; from cnnlab.data.sources import known_specs, specs_help; "
            "print(known_specs()); specs_help(); "
            "assert 'torch' not in sys.modules and 'PIL' not in sys.modules, 'heavy import'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "folder:PATH" in out.stdout


def test_lists_follow_the_registries():
    assert known_specs() == ["cifar10", "cifar100", "mnist", "fashion-mnist", "digits",
                             "folder:PATH"]
    assert list(OPS)[:3] == ["hflip", "vflip", "crop"] and list(OPS)[-1] == "randaugment"
    assert RandAugment().ops == ["identity", "shear_x", "shear_y", "translate_x",
                                 "translate_y", "rotate", "brightness", "color", "contrast",
                                 "sharpness", "posterize", "solarize", "autocontrast",
                                 "equalize"]


def test_a_registered_source_is_a_spec(clean_registries):
    @register_source("tiny", kind="bundled", takes_path=True, help="two images")
    def load(req):
        images = torch.zeros(4, 2, 2, 1, dtype=torch.uint8)
        return Dataset("tiny", ImageSet(images, torch.tensor([0, 1, 0, 1]), ["a", "b"]),
                       info={"path": req.path})

    assert "tiny" in known_specs() and parse_spec("TINY:/x").path == "/x"
    ds = load_dataset("tiny:/x", test_fraction=0.0, resize=3)
    assert ds.train.images.shape == (4, 3, 3, 1) and ds.info["path"] == "/x"
    with pytest.raises(DataError, match="did you mean 'tiny'"):
        parse_spec("tinyy")
    with pytest.raises(ValueError, match="taken"):
        register_source("tiny")(load)


def test_a_registered_op_builds_from_tables(clean_registries):
    @register_op
    class Darken(Op):
        name = "darken"
        aliases = ("dim",)
        params = ("amount", "p")
        magnitude_param = "amount"

        def __init__(self, amount: float = 0.5, p: float = 1.0):
            super().__init__(p)
            self.amount = amount

        def apply(self, x, y, params):
            return x * (1 - self.amount), y

    assert "darken" in OPS and isinstance(make_op({"op": "dim", "magnitude": 0.25}), Darken)
    pipe = build_pipeline(["flip", {"op": "darken", "amount": 1.0}], 10)
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(pipe(x, torch.arange(2), torch.Generator())[0], torch.zeros_like(x))
    with pytest.raises(ValueError, match="taken"):
        register_op(type("Again", (Darken,), {"name": "darker", "aliases": ("dim",)}))
    with pytest.raises(ConfigError, match="did you mean 'darken'"):
        make_op("darkn")
