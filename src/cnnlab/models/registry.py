"""Model registry: ``@register_model`` on builders, ``create_model(name, ...)``,
``list_models("resnet*")`` and ``model_info`` (a model card with parameters and FLOPs)."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from cnnlab.errors import ModelError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    default_input: int  # native square input side in pixels
    min_input: int  # smallest square side the architecture accepts
    paper: str = ""
    tags: tuple = field(default_factory=tuple)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    fn: Callable | None = None,
    *,
    family: str | None = None,
    default_input: int = 32,
    min_input: int = 1,
    paper: str = "",
    name: str | None = None,
):
    """Register a builder ``fn(num_classes=..., in_chans=..., **kwargs) -> nn.Module``.

    Usable bare (``@register_model``) or with card fields (``@register_model(family=...)``).
    """

    def wrap(f: Callable) -> Callable:
        key = name or f.__name__
        fam = family or f.__module__.rsplit(".", 1)[-1]
        _REGISTRY[key] = ModelEntry(key, f, fam, default_input, min_input, paper)
        return f

    return wrap(fn) if fn is not None else wrap


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else "; see `cnnlab models`"


def get_entry(name: str) -> ModelEntry:
    _load_families()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model '{name}'{_suggest(name)}")
    return _REGISTRY[name]


def builder_params(name: str) -> list[str]:
    """Keyword arguments a registered builder accepts."""
    sig = inspect.signature(get_entry(name).builder)
    return [p for p in sig.parameters if sig.parameters[p].kind != inspect.Parameter.VAR_KEYWORD]


def create_model(name: str, num_classes: int = 10, in_chans: int = 3, **kwargs) -> nn.Module:
    """Build a registered model: ``create_model("vgg", num_classes=10, blocks=3)``.

    ``timm:NAME`` and ``torchvision:NAME`` wrap those libraries' models when installed.
    """
    if ":" in name:
        from cnnlab.models.external import create_external

        return create_external(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    entry = get_entry(name)
    sig = inspect.signature(entry.builder)
    accepts_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_any:
        for key in kwargs:
            if key not in sig.parameters:
                allowed = [p for p in sig.parameters if p not in ("num_classes", "in_chans")]
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ModelError(
                    f"model '{name}' has no argument '{key}'{hint}; "
                    f"it takes: {', '.join(allowed) or 'no arguments'}"
                )
    try:
        model = entry.builder(num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as e:
        raise ModelError(f"model '{name}': {e}") from None
    model.model_name = name  # lets hub/export record what built it
    model.model_args = dict(kwargs)
    return model


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard, sorted."""
    _load_families()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_size: int | tuple[int, int], in_chans: int = 3) -> int:
    """FLOPs of one forward pass on a single image, counted by running the model
    (torch's FlopCounterMode: a multiply-add counts as 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    x = torch.zeros(1, in_chans, h, w)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_info(
    name_or_model: str | nn.Module,
    input_size: int | None = None,
    num_classes: int = 10,
    in_chans: int = 3,
    **kwargs,
) -> dict:
    """A model card: name, family, parameters, FLOPs at ``input_size``, sizes, reference."""
    if isinstance(name_or_model, nn.Module):
        model, entry = name_or_model, None
        name = getattr(model, "model_name", type(model).__name__)
        if name in _REGISTRY:
            entry = _REGISTRY[name]
    else:
        entry = get_entry(name_or_model)
        name = entry.name
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    size = input_size or (entry.default_input if entry else 32)
    return {
        "name": name,
        "family": entry.family if entry else "custom",
        "params": count_params(model),
        "input_size": size,
        "flops": count_flops(model, size, in_chans),
        "default_input": entry.default_input if entry else None,
        "min_input": entry.min_input if entry else None,
        "paper": entry.paper if entry else "",
    }


_loaded = False


def _load_families() -> None:
    """Import every family module once so their @register_model decorators run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil

    import cnnlab.models as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in ("registry", "external"):
            importlib.import_module(f"cnnlab.models.{mod.name}")
