"""Datasets in memory, where they come from and what is done to them on the device.

* :mod:`cnnlab.data.dataset`: ``ImageSet`` / ``Dataset``, the in-memory form every source
  returns (uint8 (N, H, W, C) images), seeded hold-out splits and resizing;
* :mod:`cnnlab.data.sources`: ``load_dataset(spec)``, the source registry and the sources
  (CIFAR, MNIST, digits, image folders and archives), downloads and the decode cache;
* :mod:`cnnlab.data.augment`: batched, per-sample augmentation ops and pipelines;
* :mod:`cnnlab.data.loader`: the on-device loader that feeds training.

Names are imported on first use, so light modules (``cnnlab.data.sources.cache``) load
without torch.
"""

import importlib

_LAZY = {
    "Dataset": "cnnlab.data.dataset",
    "ImageSet": "cnnlab.data.dataset",
    "seeded_split": "cnnlab.data.dataset",
    "with_splits": "cnnlab.data.dataset",
    "load_dataset": "cnnlab.data.sources",
    "register_source": "cnnlab.data.sources",
    "register_op": "cnnlab.data.augment",
    "build_pipeline": "cnnlab.data.augment",
    "DeviceLoader": "cnnlab.data.loader",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnlab.data' has no attribute {name!r}")


__all__ = list(_LAZY)
