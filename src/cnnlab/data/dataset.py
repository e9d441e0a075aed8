"""The in-memory form every data source returns, and what is done to it whatever the source.

An ``ImageSet`` is one split: ``images`` uint8 (N, H, W, C), ``labels`` int64 (N,),
and the class names.  A ``Dataset`` bundles the splits of one source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from cnnlab.errors import DataError


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 (N, H, W, C)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(
                f"images must be uint8 (N, H, W, C), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise DataError(
                f"labels must be (N,) with N={len(self.images)}, got {tuple(self.labels.shape)}"
            )
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index], self.classes)

    def counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of pixel values scaled to [0, 1] (exact, from histograms)."""
        c = self.images.shape[-1]
        flat = self.images.reshape(-1, c)
        hist = torch.stack([torch.bincount(flat[:, i], minlength=256) for i in range(c)])
        hist = hist.double()  # (C, 256) counts of each pixel value
        value = torch.arange(256, dtype=torch.float64) / 255.0
        n = hist.sum(1)
        mean = (hist * value).sum(1) / n
        std = ((hist * value * value).sum(1) / n - mean * mean).clamp_min(0).sqrt()
        return mean.tolist(), std.tolist()


@dataclass
class Dataset:
    """The splits of one source. ``test`` is the official split when the source has one."""

    name: str
    train: ImageSet
    test: ImageSet | None = None
    val: ImageSet | None = None
    official_test: bool = False
    cache_path: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def splits(self) -> dict[str, ImageSet]:
        return {k: v for k, v in (("train", self.train), ("val", self.val), ("test", self.test))
                if v is not None}


def seeded_split(
    data: ImageSet, fraction: float, seed: int
) -> tuple[ImageSet, ImageSet | None]:
    """Split off a seeded, stratified ``fraction`` of ``data``: returns (rest, held_out).

    Stratified so each class keeps its share; the same seed always holds out the same images.
    """
    if fraction <= 0:
        return data, None
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in range(data.num_classes):
        idx = torch.nonzero(data.labels == c).flatten()
        if len(idx) == 0:
            continue
        k = int(round(len(idx) * fraction))
        held.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    held_idx = torch.cat(held).sort().values if held else torch.empty(0, dtype=torch.long)
    if len(held_idx) == 0:
        return data, None
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[held_idx] = False
    return data.subset(torch.nonzero(mask).flatten()), data.subset(held_idx)


def with_splits(ds: Dataset, val_fraction: float, test_fraction: float, seed: int) -> Dataset:
    """Carve a test split (when the source has none) and a validation split from train."""
    train, test = ds.train, ds.test
    if test is None and test_fraction > 0:
        train, test = seeded_split(train, test_fraction, seed)
    train, val = seeded_split(train, val_fraction, seed + 1)
    return Dataset(ds.name, train, test, val, ds.official_test, ds.cache_path, dict(ds.info))


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


def resized(ds: Dataset, side: int) -> Dataset:
    """Every split of ``ds`` resized to ``side`` x ``side`` (see :func:`resize_images`)."""

    def one(s: ImageSet | None) -> ImageSet | None:
        return None if s is None else ImageSet(resize_images(s.images, side), s.labels,
                                               s.classes)

    return Dataset(ds.name, one(ds.train), one(ds.test), one(ds.val), ds.official_test,
                   ds.cache_path, {**ds.info, "resize": side})
