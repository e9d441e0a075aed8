"""Data sources, the decode cache and the on-device loader.

Names are imported on first use, so light modules (``cnnlab.data.cache``) load without torch.
"""

import importlib

_LAZY = {
    "Dataset": "cnnlab.data.dataset",
    "ImageSet": "cnnlab.data.dataset",
    "seeded_split": "cnnlab.data.dataset",
    "with_splits": "cnnlab.data.dataset",
    "load_dataset": "cnnlab.data.sources",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnlab.data' has no attribute {name!r}")


__all__ = ["Dataset", "ImageSet", "load_dataset", "seeded_split", "with_splits"]
