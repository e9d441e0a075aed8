"""Load weights saved by torchvision or timm into the matching cnnlab families.

A key map turns one checkpoint key into the cnnlab parameter name it holds, e.g.
torchvision's ``layer2.0.downsample.1.running_var`` into ResNet's
``stages.1.0.shortcut.1.running_var``. :func:`convert_state_dict` applies it strictly:
every tensor of the checkpoint must land on a parameter or buffer of the model with the
same shape (a layer scale stored as (C, 1, 1) fits a (C,) one), and every tensor of the
model must get one; the first key that does not fit is named in a one-line ModelError.
BatchNorm's ``num_batches_tracked`` may be absent (checkpoints older than PyTorch 0.4.1,
such as torchvision's first ResNet files, lack it); it then starts at 0.

Maps per family and layout (the layouts as torchvision's and timm's model classes name
their parameters; the families as the architectures match, at their ImageNet stems):

    resnet / resnext / wide_resnet  torchvision, timm  (the two name ResNets alike)
    vgg                             torchvision        (timm's VGG has a convolutional head)
    mobilenet (v2)                  torchvision, timm
    efficientnet                    torchvision, timm
    convnext                        torchvision, timm

A model whose own names the checkpoint already uses (a cnnlab file) is the "cnnlab" layout.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import nn

from cnnlab.errors import ModelError

KeyFn = Callable[[str, set], "str | None"]  # (checkpoint key, model's keys) -> model key
OPTIONAL_SUFFIX = ".num_batches_tracked"
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def _rules(*pairs: tuple[str, str]) -> KeyFn:
    """A key map from (regex, template) pairs, tried in order; the first full match wins.
    Templates use ``{1}``, ``{2}`` ... for the groups and ``{1-1}`` for group 1 minus one."""
    compiled = [(re.compile(p), t) for p, t in pairs]

    def fill(template: str, m: re.Match) -> str:
        def sub(ref: re.Match) -> str:
            g, minus = int(ref.group(1)), int(ref.group(2) or 0)
            value = m.group(g)
            return str(int(value) - minus) if minus else value
        return re.sub(r"\{(\d+)(?:-(\d+))?\}", sub, template)

    def key_fn(key: str, own: set) -> str | None:
        for pattern, template in compiled:
            m = pattern.fullmatch(key)
            if m:
                return fill(template, m)
        return None

    return key_fn


# --- ResNet: torchvision and timm share the names ------------------------------------------
RESNET = _rules(
    (r"conv1\.weight", "stem_layers.0.conv.weight"),
    (rf"bn1\.{_BN}", "stem_layers.0.norm.{1}"),
    (r"layer(\d+)\.(\d+)\.conv(\d)\.weight", "stages.{1-1}.{2}.conv{3}.conv.weight"),
    (rf"layer(\d+)\.(\d+)\.bn(\d)\.{_BN}", "stages.{1-1}.{2}.conv{3}.norm.{4}"),
    (r"layer(\d+)\.(\d+)\.downsample\.([01])\.(\w+)", "stages.{1-1}.{2}.shortcut.{3}.{4}"),
    (r"fc\.(weight|bias)", "fc.{1}"),
)


# --- VGG (torchvision): features.N counts every module (conv, [bn], relu, pool) -------------
def _vgg_torchvision(key: str, own: set) -> str | None:
    m = re.fullmatch(r"features\.(\d+)\.(\w+)", key)
    if m:
        layout = _vgg_index_table(own)
        target = layout.get(int(m.group(1)))
        return f"features.{target}.{m.group(2)}" if target else None
    m = re.fullmatch(r"classifier\.([036])\.(weight|bias)", key)
    if m:
        return {"0": "pre_logits.0", "3": "pre_logits.3", "6": "fc"}[m.group(1)] + \
            f".{m.group(2)}"
    return None


def _vgg_index_table(own: set) -> dict[int, str]:
    """torchvision's ``features`` index -> cnnlab's ``N.conv`` / ``N.norm``, from the
    positions of cnnlab's units (a cnnlab index without a conv weight is a max-pool)."""
    convs = sorted({int(k.split(".")[1]) for k in own
                    if re.fullmatch(r"features\.\d+\.conv\.weight", k)})
    if not convs:
        return {}
    table, tv = {}, 0
    for i in range(convs[-1] + 1):
        if i in convs:
            table[tv] = f"{i}.conv"
            has_norm = any(f"features.{i}.norm.{leaf}" in own
                           for leaf in ("weight", "running_mean"))
            if has_norm:
                table[tv + 1] = f"{i}.norm"
            tv += 3 if has_norm else 2  # conv, [bn], relu
        else:
            tv += 1  # max-pool
    return table


# --- MobileNet v2 ------------------------------------------------------------------------
def _mobilenet_v2_torchvision(key: str, own: set) -> str | None:
    m = re.fullmatch(r"features\.0\.([01])\.(\w+)", key)
    if m:
        return f"stem_layers.{'conv' if m.group(1) == '0' else 'norm'}.{m.group(2)}"
    m = re.fullmatch(r"features\.(\d+)\.conv\.(\d)(?:\.(\d))?\.(\w+)", key)
    if m:
        block = int(m.group(1)) - 1
        expands = f"blocks.{block}.expand.conv.weight" in own
        # (conv index, sub index) -> unit: with expansion 0.x expand, 1.x dw, 2 project
        # conv, 3 its norm; without, 0.x dw, 1 project conv, 2 its norm
        pos = (m.group(2), m.group(3))
        table = ({("0", "0"): "expand.conv", ("0", "1"): "expand.norm", ("1", "0"): "dw.conv",
                  ("1", "1"): "dw.norm", ("2", None): "project.conv", ("3", None): "project.norm"}
                 if expands else
                 {("0", "0"): "dw.conv", ("0", "1"): "dw.norm", ("1", None): "project.conv",
                  ("2", None): "project.norm"})
        unit = table.get(pos)
        return f"blocks.{block}.{unit}.{m.group(4)}" if unit else None
    m = re.fullmatch(r"features\.(\d+)\.([01])\.(\w+)", key)  # the last 1x1 conv (1280)
    if m:
        return f"blocks.{int(m.group(1)) - 1}.{'conv' if m.group(2) == '0' else 'norm'}." \
               f"{m.group(3)}"
    m = re.fullmatch(r"classifier\.1\.(weight|bias)", key)
    return f"fc.{m.group(1)}" if m else None


_MBV2_STAGE_START = (0, 1, 3, 6, 10, 13, 16)  # flat block index of each of timm's 7 stages
_TIMM_IR = {"conv_pw": "expand.conv", "bn1": "expand.norm", "conv_dw": "dw.conv",
            "bn2": "dw.norm", "se.conv_reduce": "se.reduce", "se.conv_expand": "se.expand",
            "conv_pwl": "project.conv", "bn3": "project.norm"}
_TIMM_DS = {"conv_dw": "dw.conv", "bn1": "dw.norm", "se.conv_reduce": "se.reduce",
            "se.conv_expand": "se.expand", "conv_pw": "project.conv", "bn2": "project.norm"}


def _timm_mbconv(key: str, own: set, flat: bool) -> str | None:
    """timm's EfficientNet-style nets: conv_stem/bn1, blocks.S.J (depthwise-separable or
    inverted residual), conv_head/bn2, classifier. ``flat``: cnnlab numbers the blocks
    0..16 (MobileNet v2) instead of stage.block (EfficientNet)."""
    top = {"conv_stem": "stem_layers.conv", "bn1": "stem_layers.norm"}
    m = re.fullmatch(r"(conv_stem|bn1|conv_head|bn2|classifier)\.(\w+)", key)
    if m:
        if m.group(1) == "classifier":
            return f"fc.{m.group(2)}"
        if m.group(1) in top:
            return f"{top[m.group(1)]}.{m.group(2)}"
        head = max(int(k.split(".")[1]) for k in own if k.startswith("blocks."))
        return f"blocks.{head}.{'conv' if m.group(1) == 'conv_head' else 'norm'}.{m.group(2)}"
    m = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(se\.conv_\w+|\w+)\.(\w+)", key)
    if not m:
        return None
    s, j, part, leaf = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    if flat:
        if s >= len(_MBV2_STAGE_START):
            return None
        prefix = f"blocks.{_MBV2_STAGE_START[s] + j}"
    else:
        prefix = f"blocks.{s}.{j}"
    expands = f"{prefix}.expand.conv.weight" in own
    unit = (_TIMM_IR if expands else _TIMM_DS).get(part)
    return f"{prefix}.{unit}.{leaf}" if unit else None


def _mobilenet_v2_timm(key: str, own: set) -> str | None:
    return _timm_mbconv(key, own, flat=True)


def _efficientnet_timm(key: str, own: set) -> str | None:
    return _timm_mbconv(key, own, flat=False)


def _efficientnet_torchvision(key: str, own: set) -> str | None:
    m = re.fullmatch(r"features\.0\.([01])\.(\w+)", key)
    if m:
        return f"stem_layers.{'conv' if m.group(1) == '0' else 'norm'}.{m.group(2)}"
    m = re.fullmatch(r"features\.(\d+)\.(\d+)\.block\.(\d)\.(fc[12]|[01])\.(\w+)", key)
    if m:
        prefix = f"blocks.{int(m.group(1)) - 1}.{m.group(2)}"
        units = (["expand", "dw", "se", "project"]
                 if f"{prefix}.expand.conv.weight" in own else ["dw", "se", "project"])
        k = int(m.group(3))
        if k >= len(units):
            return None
        unit, part = units[k], m.group(4)
        if unit == "se":
            sub = {"fc1": "reduce", "fc2": "expand"}.get(part)
        else:
            sub = {"0": "conv", "1": "norm"}.get(part)
        return f"{prefix}.{unit}.{sub}.{m.group(5)}" if sub else None
    m = re.fullmatch(r"features\.(\d+)\.([01])\.(\w+)", key)  # the 1x1 head conv (1280)
    if m:
        return f"blocks.{int(m.group(1)) - 1}.{'conv' if m.group(2) == '0' else 'norm'}." \
               f"{m.group(3)}"
    m = re.fullmatch(r"classifier\.1\.(weight|bias)", key)
    return f"fc.{m.group(1)}" if m else None


# --- ConvNeXt: cnnlab's stage i > 0 starts with its downsampling (norm, conv) --------------
def _convnext_block(stage: int, j: int) -> str:
    return f"stages.{stage}.{j + (2 if stage > 0 else 0)}"


_CNX_TV_PARTS = {"block.0": "dwconv", "block.2": "norm", "block.3": "fc1", "block.5": "fc2"}


def _convnext_torchvision(key: str, own: set) -> str | None:
    m = re.fullmatch(r"features\.0\.([01])\.(\w+)", key)
    if m:
        return f"stem_layers.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"features\.(\d+)\.(\d+)\.(block\.\d|layer_scale)(?:\.(\w+))?", key)
    if m and int(m.group(1)) % 2 == 1:  # odd features: a stage's blocks
        prefix = _convnext_block((int(m.group(1)) - 1) // 2, int(m.group(2)))
        if m.group(3) == "layer_scale":
            return f"{prefix}.layer_scale" if m.group(4) is None else None
        part = _CNX_TV_PARTS.get(m.group(3))
        return f"{prefix}.{part}.{m.group(4)}" if part and m.group(4) else None
    m = re.fullmatch(r"features\.(\d+)\.([01])\.(\w+)", key)
    if m and int(m.group(1)) % 2 == 0:  # even features > 0: downsampling (norm, conv)
        return f"stages.{int(m.group(1)) // 2}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"classifier\.([02])\.(weight|bias)", key)
    if m:
        return f"{'pool.1' if m.group(1) == '0' else 'fc'}.{m.group(2)}"
    return None


def _convnext_timm(key: str, own: set) -> str | None:
    m = re.fullmatch(r"stem\.([01])\.(\w+)", key)
    if m:
        return f"stem_layers.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"stages\.(\d+)\.downsample\.([01])\.(\w+)", key)
    if m:
        return f"stages.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(conv_dw|norm|mlp\.fc1|mlp\.fc2|gamma)"
                     r"(?:\.(\w+))?", key)
    if m:
        prefix = _convnext_block(int(m.group(1)), int(m.group(2)))
        if m.group(3) == "gamma":
            return f"{prefix}.layer_scale" if m.group(4) is None else None
        part = {"conv_dw": "dwconv", "norm": "norm", "mlp.fc1": "fc1", "mlp.fc2": "fc2"}
        return f"{prefix}.{part[m.group(3)]}.{m.group(4)}" if m.group(4) else None
    m = re.fullmatch(r"head\.(norm|fc)\.(weight|bias)", key)
    if m:
        return f"{'pool.1' if m.group(1) == 'norm' else 'fc'}.{m.group(2)}"
    return None


# family (the registry's) -> layout -> key map
KEY_MAPS: dict[str, dict[str, KeyFn]] = {
    "resnet": {"torchvision": RESNET, "timm": RESNET},
    "resnext": {"torchvision": RESNET, "timm": RESNET},
    "wide_resnet": {"torchvision": RESNET, "timm": RESNET},
    "vgg": {"torchvision": _vgg_torchvision},
    "mobilenet": {"torchvision": _mobilenet_v2_torchvision, "timm": _mobilenet_v2_timm},
    "efficientnet": {"torchvision": _efficientnet_torchvision, "timm": _efficientnet_timm},
    "convnext": {"torchvision": _convnext_torchvision, "timm": _convnext_timm},
}
LAYOUTS = ("auto", "cnnlab", "torchvision", "timm")


def _family(model: nn.Module) -> str:
    from cnnlab.models.registry import get_entry

    name = getattr(model, "model_name", None)
    if not name:
        raise ModelError("loading a torchvision/timm checkpoint needs a model built by "
                         "cnnlab.create_model")
    return get_entry(name).family


def _fits(src: torch.Tensor, dst_shape: torch.Size) -> bool:
    """Same shape, or the same shape once size-1 dimensions are dropped (torchvision keeps
    ConvNeXt's layer scale as (C, 1, 1), cnnlab as (C,))."""
    if tuple(src.shape) == tuple(dst_shape):
        return True
    return [s for s in src.shape if s != 1] == [s for s in dst_shape if s != 1]


def map_keys(state: Mapping[str, torch.Tensor], model: nn.Module, layout: str
             ) -> dict[str, str]:
    """Checkpoint key -> model key under ``layout`` (names only: no shapes checked);
    ModelError naming the first key without a counterpart."""
    own = set(model.state_dict())
    if layout == "cnnlab":
        key_fn: KeyFn = lambda k, _own: k  # noqa: E731
    else:
        family = _family(model)
        maps = KEY_MAPS.get(family, {})
        if layout not in maps:
            known = ", ".join(f"{f} ({'/'.join(m)})" for f, m in KEY_MAPS.items())
            raise ModelError(f"no {layout} key map for the '{family}' family of "
                             f"'{model.model_name}'; maps exist for: {known}")
        key_fn = maps[layout]
    out: dict[str, str] = {}
    taken: dict[str, str] = {}
    for key in state:
        target = key_fn(key, own)
        if target is None or target not in own:
            raise ModelError(f"checkpoint key '{key}' ({layout} layout) has no counterpart in "
                             f"'{getattr(model, 'model_name', type(model).__name__)}'"
                             + (f" (would be '{target}')" if target else ""))
        if target in taken:
            raise ModelError(f"checkpoint keys '{taken[target]}' and '{key}' both map to "
                             f"'{target}' ({layout} layout)")
        out[key], taken[target] = target, key
    return out


def convert_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module,
                       layout: str = "auto", where: str = "the checkpoint"
                       ) -> tuple[dict[str, torch.Tensor], str]:
    """``state`` (cnnlab, torchvision or timm names) as a state dict of ``model``, strictly:
    every tensor used, every model tensor given (``num_batches_tracked`` may be absent),
    shapes checked. ``layout="auto"`` tries cnnlab's own names, then the family's maps.
    Returns (state dict, layout used); ModelError naming the first key that does not fit."""
    if layout not in LAYOUTS:
        raise ModelError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "auto":
        candidates = ["cnnlab"] + list(KEY_MAPS.get(_family(model), {}))
    else:
        candidates = [layout]
    errors: list[tuple[int, ModelError]] = []
    for cand in candidates:
        try:
            return _convert(state, model, cand, where), cand
        except ModelError as e:
            errors.append((getattr(e, "matched", 0), e))
    # report the layout that got furthest (most keys matched before the first misfit)
    raise max(errors, key=lambda pair: pair[0])[1]


def _convert(state: Mapping[str, torch.Tensor], model: nn.Module, layout: str, where: str
             ) -> dict[str, torch.Tensor]:
    own = model.state_dict()
    name = getattr(model, "model_name", type(model).__name__)
    matched = 0
    try:
        keys = map_keys(state, model, layout)
    except ModelError as e:
        n_mapped = sum(1 for k in state if _safe_target(k, model, layout) in own)
        error = ModelError(f"the weights in {where} do not fit '{name}': {e}")
        error.matched = n_mapped
        raise error from None
    out: dict[str, torch.Tensor] = {}
    for key, target in keys.items():
        t, want = state[key], own[target].shape
        if not _fits(t, want):
            error = ModelError(f"the weights in {where} do not fit '{name}': '{key}' has shape "
                               f"{tuple(t.shape)}, '{target}' needs {tuple(want)} ({layout} "
                               f"layout)")
            error.matched = matched
            raise error
        out[target] = t.reshape(want)
        matched += 1
    missing = [k for k in own if k not in out and not k.endswith(OPTIONAL_SUFFIX)]
    if missing:
        error = ModelError(f"the weights in {where} do not fit '{name}': '{missing[0]}' gets "
                           f"no tensor from the checkpoint ({layout} layout; {len(missing)} "
                           f"of the model's tensors missing)")
        error.matched = matched
        raise error
    for k in own:
        if k not in out:  # num_batches_tracked of an old checkpoint: start at 0
            out[k] = torch.zeros((), dtype=own[k].dtype)
    return out


def _safe_target(key: str, model: nn.Module, layout: str) -> str | None:
    if layout == "cnnlab":
        return key
    fn = KEY_MAPS.get(_family(model), {}).get(layout)
    return fn(key, set(model.state_dict())) if fn else None


def head_classes(state: Mapping[str, torch.Tensor], model: nn.Module, layout: str = "auto"
                 ) -> int | None:
    """The class count of the checkpoint's classifier (rows of the tensor that maps to
    ``fc.weight``), or None when no key maps there."""
    layouts = ["cnnlab", *KEY_MAPS.get(_family(model), {})] if layout == "auto" else [layout]
    own = set(model.state_dict())
    for lay in layouts:
        for key, t in state.items():
            target = key if lay == "cnnlab" else _safe_target(key, model, lay)
            if target == "fc.weight" and target in own and t.ndim == 2:
                return int(t.shape[0])
    return None
