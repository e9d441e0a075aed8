"""Repeated augmentation in the loader and RandAugment's magnitude noise."""

import torch

from cnnlab.data.augment import build_pipeline
from cnnlab.data.augment.randaugment import RandAugment
from cnnlab.data.dataset import ImageSet
from cnnlab.data.loader import DeviceLoader


def _images(n: int) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 8, 8, 3), generator=g, dtype=torch.uint8)
    return ImageSet(x, torch.arange(n) % 3, ["a", "b", "c"])


def test_repeated_augmentation_keeps_the_epoch_and_repeats_each_image():
    data = _images(10)
    plain = DeviceLoader(data, 4, seed=1)
    rep = DeviceLoader(data, 4, seed=1, aug_repeats=3)
    assert len(rep) == len(plain) == 2 and rep.num_samples == plain.num_samples
    order = rep.order(0)
    assert len(order) == 10
    distinct = order.unique_consecutive()
    assert len(distinct) == 4 == len(set(order.tolist()))  # ceil(10 / 3) images
    assert order[:9].view(3, 3).eq(order[:9].view(3, 3)[:, :1]).all()  # k copies in a row
    assert torch.equal(order, DeviceLoader(data, 4, seed=1, aug_repeats=3).order(0))  # seeded
    assert not torch.equal(order, rep.order(1))


def test_repeated_copies_are_augmented_differently():
    data = _images(12)
    aug = build_pipeline([{"op": "crop", "pad": 2}, {"op": "randaugment", "n": 2, "m": 9}],
                         3, image_size=8)
    loader = DeviceLoader(data, 6, seed=0, aug_repeats=3, augment=aug)
    x, y = next(iter(loader))
    assert torch.equal(y[:3], y[:1].expand(3))
    assert not torch.equal(x[0], x[1]) and not torch.equal(x[1], x[2])


def test_randaugment_magnitude_noise():
    shape = (4000, 3, 8, 8)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    old = RandAugment(n=2, m=9).sample(shape, g(), None)
    same = RandAugment(n=2, m=9, m_std=0).sample(shape, g(), None)
    for (c0, l0), (c1, l1) in zip(old["layers"], same["layers"]):  # std 0: the old draws
        assert torch.equal(c0, c1) and torch.equal(l0, l1)
    assert RandAugment(n=2, m=9, m_std=0).config() == RandAugment(n=2, m=9).config()
    noisy = RandAugment(n=1, m=21, m_std=1.5).sample(shape, g(), None)
    mag = noisy["layers"][0][1].abs() * 30  # per-sample magnitude on the 0..30 scale
    assert abs(mag.mean().item() - 21) < 0.1 and abs(mag.std().item() - 1.5) < 0.1
    assert len(mag.unique()) > 1000
    clipped = RandAugment(n=1, m=29, m_std=3).sample(shape, g(), None)["layers"][0][1]
    assert clipped.abs().max().item() <= 1.0 and (clipped.abs() == 1.0).any()
    a = RandAugment(n=1, m=21, m_std=1.5).sample(shape, g(), None)["layers"][0][1]
    assert torch.equal(a, noisy["layers"][0][1])  # seeded
