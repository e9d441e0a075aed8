"""Data sources, the decode cache and the on-device loader."""

from cnnlab.data.dataset import Dataset, ImageSet, seeded_split, with_splits

__all__ = ["Dataset", "ImageSet", "seeded_split", "with_splits"]
