"""Model registry: ``@register_model`` on builders, ``create_model(name, ...)``,
``list_models("resnet*")`` and ``model_info`` (a model card with parameters and FLOPs).

A family with several variants registers them as rows of a table (timm's
``model_args = dict(block=..., layers=[...])``): ``register_family(build_resnet, RESNETS)``
where ``RESNETS["resnet18"] = Variant(dict(block=BasicBlock, layers=(2, 2, 2, 2)), doc)``.
The row's arguments are fixed (they make the variant and are not ``model.*`` keys); every
other argument of the family builder is the variant's, with the row's ``defaults``.

Also the pieces every family shares at the model level: :class:`ImageClassifier` (one
interface: ``forward_features``, ``forward_head``, ``forward``, ``reset_classifier``, and a
cheap check that an input is not smaller than the architecture accepts) and
:func:`resolve_stem` (the ``stem="auto" | "imagenet" | "cifar"`` rule).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ModelError, close_matches, did_you_mean
from cnnlab.layers.pool import GlobalAvgPool2d
from cnnlab.utils.params import count_params


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about a name before building it (the static card)."""

    name: str
    builder: Callable[..., nn.Module]  # a plain builder or a VariantBuilder
    family: str
    default_input: int  # native square input side in pixels
    min_input: int  # smallest square side the architecture accepts
    paper: str = ""

    @property
    def num_classes(self) -> int:
        """The builder's default class count (1000 for ImageNet models, 10 for CIFAR)."""
        p = inspect.signature(self.builder).parameters.get("num_classes")
        return int(p.default) if p is not None and isinstance(p.default, int) else 10


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

    Usable bare (``@register_model``) or with card fields (``@register_model(family=...)``):
    ``default_input`` is the native square input side, ``min_input`` the smallest side the
    default build accepts (models built for small images may accept less; the built
    model's ``min_input`` attribute is authoritative), ``paper`` the reference.
    """

    def wrap(f: Callable) -> Callable:
        key = name or f.__name__
        fam = family or f.__module__.rsplit(".", 1)[-1]
        _REGISTRY[key] = ModelEntry(key, f, fam, default_input, min_input, paper)
        return f

    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True)
class Variant:
    """One row of a family's table.

    ``args``: the family builder's arguments that make this variant (block type, stage
    depths, widths, ...); fixed, so not ``model.*`` keys. ``doc``: the card's description
    (what it is, its parameter count). ``defaults``: the variant's own defaults for other
    arguments (e.g. ``drop_path_rate=0.4``). The card fields left None are the family's.
    """

    args: Mapping[str, Any]
    doc: str
    family: str | None = None
    paper: str | None = None
    default_input: int | None = None
    min_input: int | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)


class VariantBuilder:
    """A family builder with a row's arguments fixed: what the registry calls for a variant.

    Its signature (which ``create_model`` validates keys against and ``builder_params``
    lists) is the family builder's minus the fixed arguments, with the row's defaults. The
    family builder also gets ``variant=<registered name>``, for its messages.
    """

    def __init__(self, family_builder: Callable[..., nn.Module], name: str, row: Variant):
        self.family_builder = family_builder
        self.fixed = {"variant": name, **row.args}
        self.defaults = dict(row.defaults)
        sig = inspect.signature(family_builder)
        unknown = (set(self.fixed) | set(self.defaults)) - set(sig.parameters)
        if unknown:
            raise TypeError(f"{name}: {family_builder.__name__} has no argument(s) "
                            f"{sorted(unknown)}")
        params = [p.replace(default=self.defaults.get(k, p.default))
                  for k, p in sig.parameters.items() if k not in self.fixed]
        required = [p.name for p in params if p.default is inspect.Parameter.empty]
        if required:
            raise TypeError(f"{name}: the row must fix {required} of {family_builder.__name__}")
        self.__signature__ = sig.replace(parameters=params)
        self.__name__ = self.__qualname__ = name
        self.__module__ = family_builder.__module__
        self.__doc__ = row.doc

    def __call__(self, **kwargs) -> nn.Module:
        return self.family_builder(**self.fixed, **{**self.defaults, **kwargs})

    def __repr__(self) -> str:
        return f"<{self.__name__}: {self.family_builder.__name__} with {self.fixed}>"


def register_family(builder: Callable[..., nn.Module], variants: Mapping[str, Variant], *,
                    family: str, default_input: int = 224, min_input: int = 1,
                    paper: str = "") -> None:
    """Register every row of a family's table through its one ``builder``; a row's card
    fields default to the family's."""
    for name, row in variants.items():
        register_model(
            VariantBuilder(builder, name, row), name=name, family=row.family or family,
            default_input=row.default_input or default_input,
            min_input=row.min_input or min_input,
            paper=row.paper if row.paper is not None else paper,
        )


def _norm_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def suggest_models(name: str, n: int = 3) -> list[str]:
    """Registered names closest to ``name`` (spelling, case and '-'/'_' forgiven)."""
    _load_families()
    key = _norm_name(name)
    by_norm = {_norm_name(k): k for k in _REGISTRY}
    exact = [by_norm[key]] if key in by_norm else []
    close = close_matches(key, by_norm, n=n)
    prefixed = sorted(v for k, v in by_norm.items() if key and k.startswith(key))
    out: list[str] = []
    for cand in exact + [by_norm[c] for c in close] + prefixed:
        if cand not in out:
            out.append(cand)
    return out[:n]


def _suggest(name: str) -> str:
    close = suggest_models(name)
    return f"; did you mean {', '.join(close)}?" if close else "; see `cnnlab models`"


def get_entry(name: str) -> ModelEntry:
    _load_families()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model '{name}'{_suggest(name)}")
    return _REGISTRY[name]


# Keywords every registered model takes on top of its builder's own, with their defaults:
# ``create_model`` handles them after the builder returns (see :func:`scale_init`).
GENERIC_PARAMS: dict[str, Any] = {"init_scale": 1.0}


def builder_params(name: str) -> list[str]:
    """Keyword arguments a registered model accepts: its builder's (for a table row: the
    family builder's minus those the row fixes), then the generic ones of every model
    (:data:`GENERIC_PARAMS`)."""
    sig = inspect.signature(get_entry(name).builder)
    own = [p for p in sig.parameters if sig.parameters[p].kind != inspect.Parameter.VAR_KEYWORD]
    return own + [k for k in GENERIC_PARAMS if k not in own]


def _check_init_scale(init_scale: Any, name: str) -> None:
    ok = (isinstance(init_scale, int | float) and not isinstance(init_scale, bool)
          and 0 < init_scale < float("inf"))
    if not ok:
        raise ModelError(f"{name}: init_scale must be a finite number > 0, got {init_scale!r}")


def scale_init(model: nn.Module, init_scale: float, name: str = "model") -> nn.Module:
    """Multiply the initial weights by ``init_scale`` in place (Liu et al.'s "Omnigrok"
    alpha, the weight-norm knob of grokking experiments).

    Scaled: every parameter with two or more dimensions (the weights of convolutions and
    linear layers) outside normalization layers. Left alone: biases, norm layers' affine
    parameters and other 1-D parameters (e.g. ConvNeXt's layer scale). Note that a
    weight-standardized convolution ("ws") normalizes its weight, so scaling it is a no-op
    there. ``init_scale == 1.0`` leaves the model untouched (bitwise).
    """
    _check_init_scale(init_scale, name)
    if init_scale == 1.0:
        return model
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _NORM_TYPES):
                continue
            for p in module.parameters(recurse=False):
                if p.dim() > 1:
                    p.mul_(init_scale)
    return model


def create_model(name: str, num_classes: int | None = None, in_chans: int = 3,
                 pretrained=False, **kwargs) -> nn.Module:
    """Build a registered model: ``create_model("vgg", num_classes=10, blocks=3)``.

    ``num_classes`` defaults to 10, or with ``pretrained`` to the weights' class count.
    ``pretrained`` loads weights (:mod:`cnnlab.models.weights`): ``True`` (the shipped
    default for ``name``), a shipped tag (``"cifar10-resnet20"``), a model folder, a weights
    file in cnnlab's, torchvision's or timm's layout, or ``"hf-hub:owner/repo"``; with a
    ``num_classes`` other than the weights' the classifier is replaced.

    ``timm:NAME`` and ``torchvision:NAME`` wrap those libraries' models when installed
    (their ``pretrained=True`` loads the library's own weights).

    Every model also takes the generic keywords of :data:`GENERIC_PARAMS`:
    ``init_scale`` (default 1.0, a no-op) multiplies the initial conv/linear weights right
    after construction (:func:`scale_init`).
    """
    init_scale = kwargs.get("init_scale", GENERIC_PARAMS["init_scale"])
    _check_init_scale(init_scale, f"model '{name}'")  # before building anything
    if pretrained is not False and pretrained is not None and ":" not in name:
        from cnnlab.models.weights import create_pretrained

        return create_pretrained(name, pretrained, num_classes, in_chans, kwargs)
    num_classes = 10 if num_classes is None else num_classes
    if ":" in name:
        from cnnlab.models.external import create_external

        ext_kwargs = {k: v for k, v in kwargs.items() if k != "init_scale"}
        if pretrained:
            ext_kwargs["pretrained"] = pretrained
        model = create_external(name, num_classes=num_classes, in_chans=in_chans, **ext_kwargs)
        if "init_scale" in kwargs:
            scale_init(model, init_scale, f"model '{name}'")
            model.model_args = {**getattr(model, "model_args", {}), "init_scale": init_scale}
        return model
    entry = get_entry(name)
    sig = inspect.signature(entry.builder)
    own = {k: v for k, v in kwargs.items() if k not in GENERIC_PARAMS}
    accepts_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_any:
        for key in own:
            if key not in sig.parameters:
                allowed = [p for p in builder_params(name)
                           if p not in ("num_classes", "in_chans")]
                raise ModelError(
                    f"model '{name}' has no argument '{key}'{did_you_mean(key, allowed)}; "
                    f"it takes: {', '.join(allowed) or 'no arguments'}"
                )
    try:
        model = entry.builder(num_classes=num_classes, in_chans=in_chans, **own)
    except TypeError as e:
        raise ModelError(f"model '{name}': {e}") from None
    scale_init(model, init_scale, f"model '{name}'")
    model.model_name = name  # lets hub/export record what built it
    model.model_args = dict(kwargs)
    model.model_num_classes = num_classes
    model.model_in_chans = in_chans
    return model


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard (case-insensitive), sorted."""
    _load_families()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern.lower()))


def count_flops(model: nn.Module, input_size: int | tuple[int, int], in_chans: int = 3) -> int:
    """FLOPs of one forward pass on a single image, counted by running the model
    (torch's FlopCounterMode: a multiply-add counts as 2 FLOPs; convolutions and matrix
    products are counted, normalization and activations are not).

    A model on the meta device (see :func:`model_info`) runs on shapes only; its norm layers
    are bypassed there, since their meta kernels are slow Python and count no FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, in_chans, h, w, device=device)
    was_training = model.training
    model.eval()
    bypassed = _bypass_norms(model) if device.type == "meta" else []
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for m in bypassed:
            del m.forward  # back to the class's forward
        model.train(was_training)
    return int(counter.get_total_flops())


_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
               nn.LocalResponseNorm)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _bypass_norms(model: nn.Module) -> list[nn.Module]:
    """Make torch's shape-preserving norm layers the identity (instance attribute)."""
    norms = [m for m in model.modules() if isinstance(m, _NORM_TYPES)]
    for m in norms:
        m.forward = _identity
    return norms


def model_info(
    name_or_model: str | nn.Module,
    input_size: int | None = None,
    num_classes: int | None = None,
    in_chans: int = 3,
    **kwargs,
) -> dict:
    """A model card: name, family, parameters, FLOPs at ``input_size``, sizes, reference.

    For a registered name the model is built (on the meta device: no memory, no time) with
    ``num_classes`` (default: the builder's, e.g. 1000 for ImageNet models) and, when the
    builder takes ``input_size``, with that size, so ``stem="auto"`` picks the stem a user
    training at that size would get. Cards of names are cached.
    """
    if isinstance(name_or_model, nn.Module):
        return _card_of(name_or_model, input_size, in_chans)
    entry = get_entry(name_or_model)
    key = json.dumps(kwargs, sort_keys=True, default=repr)
    return copy.deepcopy(_cached_card(entry.name, input_size, num_classes, in_chans, key))


@functools.lru_cache(maxsize=512)
def _cached_card(name: str, input_size: int | None, num_classes: int | None, in_chans: int,
                 kwargs_json: str) -> dict:
    entry = _REGISTRY[name]
    kwargs = json.loads(kwargs_json)
    if input_size is not None and "input_size" in builder_params(name):
        kwargs.setdefault("input_size", input_size)
    n = entry.num_classes if num_classes is None else num_classes
    try:
        with torch.device("meta"):  # shapes only: builds a 140M-parameter VGG instantly
            model = create_model(name, num_classes=n, in_chans=in_chans, **kwargs)
        card = _card_of(model, input_size, in_chans)
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: build for real
        model = create_model(name, num_classes=n, in_chans=in_chans, **kwargs)
        card = _card_of(model, input_size, in_chans)
    card["args"] = kwargs
    return card


def _card_of(model: nn.Module, input_size: int | None, in_chans: int) -> dict:
    name = getattr(model, "model_name", type(model).__name__)
    entry = _REGISTRY.get(name)
    size = input_size or (entry.default_input if entry else 32)
    min_input = getattr(model, "min_input", entry.min_input if entry else None)
    return {
        "name": name,
        "family": entry.family if entry else "custom",
        "params": count_params(model),
        "input_size": size,
        "flops": count_flops(model, size, in_chans),
        "num_classes": getattr(model, "num_classes", getattr(model, "model_num_classes", None)),
        "default_input": entry.default_input if entry else None,
        "min_input": min_input,
        "stem": getattr(model, "stem", None),
        "paper": entry.paper if entry else "",
    }


# ---------------------------------------------------------------------------------------
# shared model-level pieces

STEMS = ("auto", "imagenet", "cifar")
SMALL_IMAGE_MAX = 64  # stem="auto" picks the small-image stem for inputs up to this side


def input_side(input_size: int | Sequence[int] | None) -> int | None:
    """The smaller side of an ``input_size`` given as N, (H, W) or None."""
    if input_size is None:
        return None
    if isinstance(input_size, int | float):
        return int(input_size)
    sides = [int(v) for v in input_size]
    if not sides:
        raise ModelError("input_size must be a side N or a pair (H, W), got an empty list")
    return min(sides[-2:]) if len(sides) > 2 else min(sides)


def resolve_stem(stem: str, input_size: int | Sequence[int] | None, model: str,
                 native: str = "imagenet") -> str:
    """Pick the stem: "imagenet" (the published large-image stem), "cifar" (3x3 stride-1
    first convolution, no early max-pool) or "auto": "cifar" when the declared input side
    is at most 64 pixels, else the family's ``native`` stem.

    A family designed for small images (``native="cifar"``) has no ImageNet stem.
    """
    if stem not in STEMS:
        raise ModelError(f"{model}: unknown stem {stem!r}{did_you_mean(stem, STEMS)}; "
                         f"choose auto, imagenet or cifar")
    if stem == "auto":
        side = input_side(input_size)
        return "cifar" if side is not None and side <= SMALL_IMAGE_MAX else native
    if native == "cifar" and stem == "imagenet":
        raise ModelError(f"{model} is a small-image network without an ImageNet stem; "
                         f"use stem='auto' or 'cifar'")
    return stem


class ImageClassifier(nn.Module):
    """Base of the zoo's models: (B, C, H, W) -> features -> head -> (B, num_classes).

    Subclasses build ``forward_features`` and set the head parts: ``self.pool`` (features
    -> (B, F)), ``self.pre_logits`` (e.g. VGG's hidden layers), ``self.head_drop`` and
    ``self.fc`` (the final linear layer). ``forward`` first checks the input cheaply (4-D,
    channels, at least ``min_input`` pixels a side) and raises a ModelError naming the
    minimum instead of failing deep inside a layer.
    """

    num_features: int  # channels of forward_features' output
    min_input: int = 1  # smallest square side accepted
    stem: str | None = None

    def __init__(self, num_classes: int, in_chans: int, min_input: int = 1):
        super().__init__()
        if num_classes < 0 or in_chans < 1:
            raise ModelError(f"num_classes must be >= 0 and in_chans >= 1, got {num_classes} "
                             f"and {in_chans}")
        self.num_classes, self.in_chans, self.min_input = num_classes, in_chans, min_input
        self.pool: nn.Module = nn.Sequential(GlobalAvgPool2d(), nn.Flatten(1))
        self.pre_logits: nn.Module = nn.Identity()
        self.head_drop: nn.Module = nn.Identity()
        self.fc: nn.Module = nn.Identity()

    def _set_head(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc_in = in_features
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ModelError for a batch this architecture cannot take."""
        name = getattr(self, "model_name", type(self).__name__)
        if x.dim() != 4:
            raise ModelError(f"{name} takes a batch of images (B, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ModelError(f"{name} was built for {self.in_chans}-channel images, got "
                             f"{x.shape[1]} channels; build it with in_chans={x.shape[1]}")
        h, w = x.shape[-2], x.shape[-1]
        if h < self.min_input or w < self.min_input:
            raise ModelError(
                f"{name} needs inputs of at least {self.min_input}x{self.min_input} pixels, "
                f"got {h}x{w}; resize the images"
                + ("" if self.stem in (None, "cifar") else " or build it with stem='cifar'")
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.pool(x))  # (B, F)
        return x if pre_logits else self.fc(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer by a fresh one with ``num_classes`` outputs (0: none)."""
        self.num_classes = num_classes
        self.fc = (nn.Linear(self.fc_in, num_classes) if num_classes > 0 else nn.Identity())


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
        if mod.name not in ("registry", "external", "hub", "weights", "keymaps", "card"):
            importlib.import_module(f"cnnlab.models.{mod.name}")
