"""The bundled scikit-learn digits: shape, values, seeded splits."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.dataset import resize_images


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", test_fraction=0.0)


def test_digits_shape_and_values(digits):
    x, y = digits.train.images, digits.train.labels
    assert x.shape == (1797, 32, 32, 1) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert digits.classes == [str(i) for i in range(10)] and not digits.official_test
    assert int(x.max()) == 255 and int(x.min()) == 0  # 0..16 scaled to the full range
    assert digits.test is None and digits.val is None and digits.cache_path is None


def test_digits_splits_are_seeded_and_disjoint():
    a = load_dataset("digits", val_fraction=0.1, test_fraction=0.2, split_seed=7)
    b = load_dataset("digits", val_fraction=0.1, test_fraction=0.2, split_seed=7)
    c = load_dataset("digits", val_fraction=0.1, test_fraction=0.2, split_seed=8)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert abs(len(a.test) - 359) <= 5 and abs(len(a.val) - 144) <= 5
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.test.images, c.test.images)


def test_resize_option_and_helper(digits):
    small = load_dataset("digits", test_fraction=0.0, resize=16)
    assert small.train.images.shape == (1797, 16, 16, 1) and small.info["resize"] == 16
    x = torch.full((2, 4, 4, 3), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(x, 8), torch.full((2, 8, 8, 3), 77, dtype=torch.uint8))
    assert resize_images(x, 4) is x
