"""Every registered builder accepts exactly the keys the registry advertises for it."""

from __future__ import annotations

import inspect

import pytest
import torch

from cnnlab import ModelError, create_model, list_models
from cnnlab.models.registry import GENERIC_PARAMS, VariantBuilder, builder_params, get_entry

NAMES = list_models()


def _defaults(name: str) -> dict:
    sig = inspect.signature(get_entry(name).builder)
    own = {k: p.default for k, p in sig.parameters.items() if k in builder_params(name)}
    return {**own, **GENERIC_PARAMS}


def test_the_variants_are_table_rows():
    """Only the one-off networks have builders of their own."""
    plain = [n for n in NAMES if not isinstance(get_entry(n).builder, VariantBuilder)]
    assert plain == ["googlenet", "lenet5", "vgg"]


@pytest.mark.parametrize("name", NAMES)
def test_advertised_keys_are_the_family_builders_minus_the_row(name):
    """The builder's own keys (a row's: the family builder's minus the row's), then the
    generic keys every model takes (init_scale)."""
    builder = get_entry(name).builder
    advertised = builder_params(name)
    assert len(set(advertised)) == len(advertised)
    assert {"num_classes", "in_chans"} <= set(advertised)
    generic = list(GENERIC_PARAMS)
    assert advertised[-len(generic):] == generic
    own = set(advertised) - set(generic)
    assert own == set(inspect.signature(builder).parameters) - set(generic)
    if isinstance(builder, VariantBuilder):
        family = set(inspect.signature(builder.family_builder).parameters)
        assert own == family - set(builder.fixed)
        assert "variant" in builder.fixed and not set(builder.fixed) & set(advertised)


@pytest.mark.parametrize("name", NAMES)
def test_builds_with_every_advertised_key_and_refuses_others(name):
    kwargs = _defaults(name)
    with torch.device("meta"):  # shapes only
        model = create_model(name, **kwargs)
    assert model.model_args == {k: v for k, v in kwargs.items()
                                if k not in ("num_classes", "in_chans")}
    builder = get_entry(name).builder
    refused = ["not_an_argument"] + [k for k in getattr(builder, "fixed", {})]
    for key in refused:
        with pytest.raises(ModelError, match=f"model '{name}' has no argument '{key}'"):
            create_model(name, **{key: 1})


def test_row_defaults_are_the_variants():
    assert _defaults("convnext_small")["drop_path_rate"] == 0.4
    assert _defaults("convnext_cifar")["num_classes"] == 10
    b3 = _defaults("efficientnet_b3")
    assert (b3["width_mult"], b3["depth_mult"], b3["resolution"], b3["drop_rate"]) == (
        1.2, 1.4, 300, 0.3)
    assert _defaults("mobilenet_v2")["act"] == "relu6" and _defaults("vgg11_bn")["norm"] == "bn"


def test_grouped_basic_blocks_are_refused():
    with pytest.raises(ModelError, match="BasicBlock takes groups=1"):
        create_model("resnet18", groups=32)
    with torch.device("meta"):
        assert create_model("resnet50", groups=32, base_width=4).stages[0][0].conv2.conv.groups \
            == 32
