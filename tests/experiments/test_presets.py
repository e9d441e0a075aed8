"""Every shipped preset expands to configs whose models build (no training)."""

import pytest
import torch

from cnnlab.experiments import list_presets, load_spec
from cnnlab.models.registry import create_model


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_preset_cells_build(name):
    spec = load_spec(name)
    assert spec.description
    for cell in spec.cells():
        cfg = spec.run_config(cell, 0)
        model = create_model(cfg.model.name, num_classes=10, in_chans=3, input_size=32,
                             **cfg.model.args)
        if cell == spec.cells()[-1]:
            assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
        if isinstance(cfg.data.augment, str) and cfg.data.augment != "none":
            from cnnlab.data.augment import build_pipeline

            assert build_pipeline(cfg.data.augment, 10, 32) is not None


def test_vgg_residual_and_dropout_options():
    plain = create_model("vgg", blocks=2, layers=2)
    res = create_model("vgg", blocks=2, layers=2, residual=True, norm="bn", dropout=0.5)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(res) > n(plain)  # projection shortcuts and norms
    res.eval()
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(res(x), res(x))  # dropout off at inference
