"""cnnlab: build, train and compare deep convolutional networks for image classification.

Public names are imported on first use, so ``import cnnlab`` (and a CLI command that
needs no tensors) starts without loading torch.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    # name -> module that defines it
    "RunConfig": "cnnlab.config",
    "load_config": "cnnlab.config",
    "CnnlabError": "cnnlab.errors",
    "ConfigError": "cnnlab.errors",
    "DataError": "cnnlab.errors",
    "ModelError": "cnnlab.errors",
    "TrainingError": "cnnlab.errors",
    "create_model": "cnnlab.models.registry",
    "list_models": "cnnlab.models.registry",
    "model_info": "cnnlab.models.registry",
    "register_model": "cnnlab.models.registry",
    "load_dataset": "cnnlab.data.sources",
    "fit": "cnnlab.train.run",
    "Trainer": "cnnlab.train.trainer",
    "sweep": "cnnlab.api",
    "precise_bn": "cnnlab.train.precise_bn",
    "save_pretrained": "cnnlab.models.hub",
    "load_pretrained": "cnnlab.models.hub",
    "predict": "cnnlab.models.hub",
    "export_run": "cnnlab.experiments.export",
    "list_pretrained": "cnnlab.models.weights",
    "evaluate_run": "cnnlab.experiments.evaluate",
    "run_checks": "cnnlab.experiments.checks",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in ("train", "models", "data", "layers", "experiments", "report"):
        return importlib.import_module(f"cnnlab.{name}")
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


__all__ = list(_LAZY)
