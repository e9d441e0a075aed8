"""Fine-tuning: freeze the backbone, and layer-wise learning-rate decay.

``train.freeze = "backbone"``: every parameter but the classifier's (``model.fc``, or
timm's ``get_classifier()``) stops training, and the backbone's normalization layers keep
their running statistics: they run in inference mode during training (as Keras does for
layers with ``trainable = False``), so the backbone is a fixed feature extractor and its
whole state (parameters and buffers) stays bitwise unchanged. Dropout in the backbone
still acts in training.

``optim.layer_decay = d`` (BEiT, Bao et al. 2022; timm's ``layer_decay``): the parameters
of layer i of L get ``lr * d ** (L + 1 - i)``: the stem is layer 0, each block one layer
in forward order, the head layer L + 1 (the full lr). Blocks are read from parameter
names: ``stages.S.B`` / ``blocks.S.B`` (or ``blocks.B``) / ``features.N`` (each unit of a
plain stack), ``layerS.B`` for torchvision-named ResNets; names before the first block
(the stem) are layer 0, the classifier and what sits beside it (``fc``, ``head``,
``pre_logits``, ``pool``, ``classifier``, ``final_norm``) layer L + 1.
"""

from __future__ import annotations

import re

from torch import nn

from cnnlab.errors import ConfigError

FREEZE_MODES = ("none", "backbone")
HEAD_PREFIXES = ("fc", "head", "pre_logits", "pool", "classifier", "final_norm", "head_drop")
_BLOCK = re.compile(r"^((?:stages|blocks|layers)\.\d+(?:\.\d+)?|features\.\d+|layer\d+\.\d+)\.")
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def classifier_of(model: nn.Module) -> nn.Module:
    """The final classifier layer: ``model.get_classifier()`` (timm) or ``model.fc``."""
    getter = getattr(model, "get_classifier", None)
    head = getter() if callable(getter) else getattr(model, "fc", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(f"train.freeze = 'backbone' needs a model with a classifier layer "
                          f"('fc' or get_classifier()); {type(model).__name__} has none")
    return head


def _inference_mode(module: nn.Module, args) -> None:
    module.training = False  # a frozen norm layer normalizes with its stored statistics


def freeze_backbone(model: nn.Module) -> int:
    """Stop training everything but the classifier; frozen norm layers run in inference
    mode (a forward pre-hook) so their running statistics stay. Returns the number of
    frozen parameters. Call before the optimizer is built."""
    head = classifier_of(model)
    head_params = {id(p) for p in head.parameters()}
    head_modules = {id(m) for m in head.modules()}
    frozen = 0
    for p in model.parameters():
        if id(p) not in head_params:
            p.requires_grad_(False)
            frozen += p.numel()
    for m in model.modules():
        if isinstance(m, _NORMS) and id(m) not in head_modules and \
                not getattr(m, "_cnnlab_frozen", False):
            m.register_forward_pre_hook(_inference_mode)
            m._cnnlab_frozen = True
    return frozen


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """Parameter name -> layer id (0: stem, 1..L: blocks in forward order, L + 1: head),
    and L."""
    names = [n for n, _ in model.named_parameters()]
    blocks: list[str] = []
    for n in names:
        m = _BLOCK.match(n)
        if m and m.group(1) not in blocks and not n.startswith(HEAD_PREFIXES):
            blocks.append(m.group(1))
    num_layers = len(blocks)
    order = {b: i + 1 for i, b in enumerate(blocks)}
    ids, seen_block = {}, False
    for n in names:
        m = _BLOCK.match(n)
        if n.split(".")[0] in HEAD_PREFIXES:
            ids[n] = num_layers + 1
        elif m and m.group(1) in order:
            ids[n] = order[m.group(1)]
            seen_block = True
        else:  # stem (before the blocks), or an unnamed part after them: its neighbour's
            ids[n] = 0 if not seen_block else num_layers
    return ids, num_layers


def layer_lr_scales(model: nn.Module, decay: float) -> dict[int, float]:
    """``id(parameter)`` -> lr multiplier ``decay ** (L + 1 - layer_id)``."""
    if not 0 < decay <= 1:
        raise ConfigError(f"optim.layer_decay must be in (0, 1], got {decay}")
    ids, num_layers = layer_ids(model)
    params = dict(model.named_parameters())
    return {id(params[n]): decay ** (num_layers + 1 - i) for n, i in ids.items()}
