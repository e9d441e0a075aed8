"""cnnlab: build, train and compare deep convolutional networks for image classification."""

__version__ = "0.1.0"

from cnnlab.config import RunConfig, load_config  # noqa: E402
from cnnlab.errors import CnnlabError, ConfigError, DataError, ModelError  # noqa: E402
from cnnlab.models import create_model, list_models, model_info, register_model  # noqa: E402

_LAZY = {
    # name -> module that defines it; imported on first use to keep `import cnnlab` light
    "load_dataset": "cnnlab.data",
    "fit": "cnnlab.train",
    "Trainer": "cnnlab.train",
    "sweep": "cnnlab.experiments",
    "precise_bn": "cnnlab.train.precise_bn",
    "save_pretrained": "cnnlab.models.hub",
    "load_pretrained": "cnnlab.models.hub",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


__all__ = [
    "CnnlabError", "ConfigError", "DataError", "ModelError", "RunConfig", "create_model",
    "list_models", "load_config", "model_info", "register_model", *_LAZY,
]
