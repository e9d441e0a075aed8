"""scikit-learn's bundled handwritten digits: the dataset every command can use offline.

1,797 real 8x8 grayscale images of the digits 0-9 (values 0..16), scaled to 0..255 and
resized to 32x32 so the usual CIFAR-sized models take them.  No official test split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.data.dataset import Dataset, ImageSet

SIDE = 32  # output side in pixels


def resize_images(images: torch.Tensor, side: int) -> torch.Tensor:
    """Bilinear resize of uint8 (N, H, W, C) images to (N, side, side, C), uint8."""
    if images.shape[1] == side and images.shape[2] == side:
        return images
    out = []
    for start in range(0, len(images), 4096):  # chunks keep float memory bounded
        x = images[start : start + 4096].permute(0, 3, 1, 2).float()  # (B, C, H, W)
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                          antialias=side < images.shape[1])
        out.append(x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    return torch.cat(out).contiguous()


def load_digits_dataset() -> Dataset:
    """The digits as uint8 (1797, 32, 32, 1) with classes "0".."9" (train split only).

    Scaled and resized in float, rounded once: (N, 1, 8, 8) * 255/16 -> bilinear 32x32.
    """
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float()[:, None] * (255.0 / 16.0)  # (N, 1, 8, 8)
    x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    images = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    classes = [str(i) for i in range(10)]
    return Dataset("digits", ImageSet(images, labels, classes), None, official_test=False,
                   info={"source": "sklearn.datasets.load_digits (bundled with scikit-learn)"})
