"""Data sources, the decode cache and the on-device loader."""

from cnnlab.data.dataset import Dataset, ImageSet, seeded_split, with_splits
from cnnlab.data.sources import load_dataset

__all__ = ["Dataset", "ImageSet", "load_dataset", "seeded_split", "with_splits"]
