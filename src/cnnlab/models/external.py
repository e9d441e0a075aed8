"""Models of other libraries behind cnnlab's interface: ``create_model("timm:NAME")`` and
``create_model("torchvision:NAME")``.

Neither library is a dependency: when the one a name asks for is missing, a ModelError
says which package to install. ``pretrained=True`` loads the library's default weights
(then the classifier is replaced when ``num_classes`` differs from theirs).

- timm models already have ``forward_features`` / ``forward_head`` / ``reset_classifier``
  and take ``in_chans``.
- torchvision models are wrapped in :class:`TorchvisionClassifier`: the final linear layer
  becomes ``fc``; ``forward_features`` gives the (B, F) features that feed it.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from cnnlab.errors import ModelError, close_matches

SOURCES = {"timm": "timm", "torchvision": "torchvision"}  # prefix -> package to install


def _import(source: str, spec: str):
    package = SOURCES[source]
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ModelError(f"model '{spec}' needs the '{package}' package, which is not "
                         f"installed; install it with: pip install {package}") from None


def _unknown(spec: str, name: str, names: list[str], source: str) -> ModelError:
    close = close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(f'{source}:{c}' for c in close)}?" if close else ""
    return ModelError(f"{source} has no model '{name}'{hint}")


def create_external(spec: str, num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """Build ``"timm:NAME"`` or ``"torchvision:NAME"`` with ``num_classes`` outputs."""
    source, _, name = spec.partition(":")
    if source not in SOURCES or not name:
        raise ModelError(f"unknown model source in '{spec}'; use a registered name (see "
                         f"`cnnlab models`), 'timm:NAME' or 'torchvision:NAME'")
    pretrained = bool(kwargs.pop("pretrained", False))
    if source == "timm":
        timm = _import("timm", spec)
        if not timm.is_model(name):
            raise _unknown(spec, name, list(timm.list_models()), source)
        try:
            model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes,
                                      in_chans=in_chans, **kwargs)
        except TypeError as e:
            raise ModelError(f"model '{spec}': {e}") from None
    else:
        tv = _import("torchvision", spec)
        names = list(tv.models.list_models(module=tv.models))
        if name not in names:
            raise _unknown(spec, name, names, source)
        if in_chans != 3:
            raise ModelError(f"torchvision models take 3-channel images, asked for {in_chans}; "
                             f"use in_chans=3 or a 'timm:' model (timm adapts the stem)")
        weights = "DEFAULT" if pretrained else None
        try:
            if pretrained:  # the weights fix the class count; replace the classifier after
                net = tv.models.get_model(name, weights=weights, **kwargs)
            else:
                net = tv.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        except TypeError as e:
            raise ModelError(f"model '{spec}': {e}") from None
        model = TorchvisionClassifier(net)
        if model.num_classes != num_classes:
            model.reset_classifier(num_classes)
    model.model_name = spec
    model.model_args = dict(kwargs, **({"pretrained": True} if pretrained else {}))
    model.model_num_classes = num_classes
    model.model_in_chans = in_chans
    return model


class TorchvisionClassifier(nn.Module):
    """A torchvision classifier with cnnlab's interface: its last ``nn.Linear`` is taken
    out as ``fc`` (replaced by the identity inside ``body``), so ``forward_features``
    returns the (B, F) vector that feeds the classifier."""

    def __init__(self, net: nn.Module):
        super().__init__()
        path = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
        if not path:
            raise ModelError(f"{type(net).__name__} has no linear classifier to wrap")
        parent_name, _, attr = path[-1].rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        fc = getattr(parent, attr) if not attr.isdigit() else parent[int(attr)]
        if attr.isdigit():
            parent[int(attr)] = nn.Identity()
        else:
            setattr(parent, attr, nn.Identity())
        self.body, self.fc = net, fc
        self.num_features = fc.in_features
        self.num_classes = fc.out_features
        self.in_chans = 3

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, num_features)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
