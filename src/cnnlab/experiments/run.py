"""A run from a configuration alone: the model it names is built here and handed to the
trainer, which takes any ``nn.Module`` and never imports a concrete model.

    result = train_run(load_config(overrides=["model.name='vgg'"]), "runs/a")
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnlab.config import RunConfig
from cnnlab.data.dataset import Dataset
from cnnlab.errors import ConfigError
from cnnlab.models.registry import builder_params, create_model
from cnnlab.train.checkpoint import seed_everything
from cnnlab.train.run import fit, prepare_data
from cnnlab.train.trainer import RunResult


def build_model(cfg: RunConfig, ds: Dataset) -> nn.Module:
    """create_model from ``model.*`` with classes and channels (and input size when the
    builder takes it) from the data."""
    h, _, c = ds.train.shape
    args = dict(cfg.model.args)
    from_data = {"num_classes": (ds.num_classes, f"{ds.num_classes} classes"),
                 "in_chans": (c, f"{c}-channel images")}
    for key, (value, what) in from_data.items():
        if key in args:
            given = args.pop(key)
            if given != value:
                raise ConfigError(
                    f"model.{key} = {given!r} but dataset {cfg.data.spec!r} has {what}; "
                    f"model.{key} comes from the data: drop --set model.{key}")
    if ":" not in cfg.model.name and "input_size" in builder_params(cfg.model.name):
        args.setdefault("input_size", h)
    return create_model(cfg.model.name, num_classes=ds.num_classes, in_chans=c, **args)


def train_run(cfg: RunConfig, out_dir: str | Path | None = None, resume: bool | str = False,
              progress: bool | None = None, callbacks=None) -> RunResult:
    """Seed, load data, build the model named by the config and train it."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    ds = prepare_data(cfg)
    seed_everything(cfg.train.seed)
    model = build_model(cfg, ds)
    return fit(model, ds, cfg, out_dir=out_dir, resume=resume, progress=progress,
               callbacks=callbacks)


__all__ = ["build_model", "train_run"]
