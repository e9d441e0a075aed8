"""scikit-learn's bundled handwritten digits: the dataset every command can use offline.

1,797 real 8x8 grayscale images of the digits 0-9 (values 0..16), scaled to 0..255 and
resized to 32x32 so the usual CIFAR-sized models take them.  No official test split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.data.sources.registry import SourceRequest, register_source

if TYPE_CHECKING:
    from cnnlab.data.dataset import Dataset

SIDE = 32  # output side in pixels


@register_source("digits", kind="bundled",
                 help="scikit-learn's bundled digits at 32x32 (offline)")
def load_digits(req: SourceRequest) -> Dataset:
    """The digits as uint8 (1797, 32, 32, 1) with classes "0".."9" (train split only).

    Scaled and resized in float, rounded once: (N, 1, 8, 8) * 255/16 -> bilinear 32x32.
    """
    # imported here: the registry imports this module to list it (no torch), and
    # sklearn is slow to import
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sklearn_digits

    from cnnlab.data.dataset import Dataset, ImageSet

    bunch = sklearn_digits()
    x = torch.from_numpy(bunch.images).float()[:, None] * (255.0 / 16.0)  # (N, 1, 8, 8)
    x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    images = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    classes = [str(i) for i in range(10)]
    return Dataset("digits", ImageSet(images, labels, classes), None, official_test=False,
                   info={"source": "sklearn.datasets.load_digits (bundled with scikit-learn)"})
