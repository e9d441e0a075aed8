"""The speed-record network family."""

import pytest
import torch

import cnnlab
from cnnlab.errors import ModelError


def test_speednet_builds_with_the_record_parameter_count():
    m = cnnlab.create_model("speednet")
    total = sum(p.numel() for p in m.parameters())
    trained = sum(p.numel() for p in m.parameters() if p.requires_grad)
    # whitening 24x3x2x2 + 24 bias; convs 24*64*9 + 64*64*9 + 64*256*9 + 256*256*9 * 3;
    # BN 2 x (64*2 + 256*2 + 256*2); head 256*10
    assert total == 1_972_792
    assert total - trained == 24 * 12 + (64 * 2 + 256 * 4)  # frozen filters, BN scales
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert m(torch.randn(2, 3, 16, 16)).shape == (2, 10)  # adaptive pool: lower resolutions
    assert [b.conv1.out_channels for b in m.blocks] == [64, 256, 256]


def test_variants_are_rows_and_options_are_checked():
    assert {"speednet", "speednet-s", "speednet-l"} <= set(cnnlab.list_models("speednet*"))
    small = cnnlab.create_model("speednet-s", num_classes=4, in_chans=1)
    assert small(torch.randn(1, 1, 32, 32)).shape == (1, 4)
    trainable_scale = cnnlab.create_model("speednet", norm_scale=True)
    assert trainable_scale.blocks[0].norm1.weight.requires_grad
    with pytest.raises(ModelError, match="bn_momentum"):
        cnnlab.create_model("speednet", bn_momentum=0)


def test_init_from_data_sets_the_whitening_filters():
    m = cnnlab.create_model("speednet")
    before = m.whiten.weight.clone()
    m.init_from_data(torch.randn(16, 3, 32, 32))
    assert not torch.equal(before, m.whiten.weight)
    assert m.whitening_biases() == [m.whiten.bias]
