"""A tiny learnable synthetic dataset for tests and examples (no files, no network)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnlab.data.dataset import Dataset


def toy_dataset(n: int = 256, size: int = 16, channels: int = 3, classes: int = 4,
                seed: int = 0, test: int = 0) -> Dataset:
    """Noisy images whose class sets which quadrant is bright (learnable in a few steps).

    Returns a Dataset with ``n`` training images (and ``test`` test images when > 0).
    """
    import torch  # here: the source registry imports this module without torch

    from cnnlab.data.dataset import Dataset, ImageSet

    g = torch.Generator().manual_seed(seed)

    def make(count: int) -> ImageSet:
        labels = torch.arange(count) % classes
        labels = labels[torch.randperm(count, generator=g)]
        x = torch.rand(count, size, size, channels, generator=g) * 80  # noise in [0, 80)
        half = size // 2
        for c in range(classes):
            r, q = divmod(c % 4, 2)  # quadrant of class c
            sel = labels == c
            x[sel, r * half:(r + 1) * half, q * half:(q + 1) * half, :] += 150
            x[sel, ..., c % channels] += 20 * (c // 4)  # more than 4 classes: tint too
        return ImageSet(x.clamp(0, 255).to(torch.uint8), labels, [f"c{i}" for i in range(classes)])

    return Dataset("toy", make(n), make(test) if test else None, official_test=bool(test))
