"""Where pretrained weights come from: ``create_model(name, pretrained=SOURCE)``.

SOURCE is one of

- ``True``: the default shipped weights of ``name`` (the first tag, in sorted order,
  whose architecture is ``name``);
- a tag of the weights cnnlab ships in the package (``cifar10-resnet20``; the folders of
  ``src/cnnlab/models/pretrained/``, listed by :func:`list_pretrained`): offline, always;
- a model folder written by ``save_pretrained`` (config.json + model.safetensors);
- a weights file: ``.safetensors`` or a torch checkpoint (``.pth``, ``.pt``, ``.bin``)
  in cnnlab's, torchvision's or timm's layout (:mod:`cnnlab.models.keymaps`), e.g. a
  cached ``~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth``;
- ``hf-hub:owner/repo``: a Hugging Face Hub repository in the Hub layout, through the
  optional ``huggingface_hub`` package and its cache.

With ``num_classes`` different from the weights' class count, everything but the
classifier is loaded and the classifier is replaced (``reset_classifier``), as timm does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ModelError, close_matches

SHIPPED_DIR = Path(__file__).parent / "pretrained"  # one folder per tag
HF_PREFIX = "hf-hub:"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def list_pretrained() -> dict[str, dict]:
    """Shipped tag -> its card (architecture, metrics, training...), sorted by tag."""
    from cnnlab.models.hub import CONFIG_FILE, read_card

    if not SHIPPED_DIR.is_dir():
        return {}
    return {d.name: read_card(d) for d in sorted(SHIPPED_DIR.iterdir())
            if (d / CONFIG_FILE).is_file()}


def default_tag(name: str) -> str:
    """The shipped tag ``pretrained=True`` means for ``name``."""
    tags = [t for t, card in list_pretrained().items() if card["name"] == name]
    if not tags:
        shipped = ", ".join(f"{t} ({c['name']})" for t, c in list_pretrained().items())
        raise ModelError(f"cnnlab ships no weights for '{name}' (shipped: {shipped or 'none'});"
                         f" pass pretrained=FOLDER, a weights file or 'hf-hub:owner/repo'")
    return tags[0]


def hf_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads ($HF_HUB_CACHE, else $HF_HOME/hub, else
    ~/.cache/huggingface/hub), the same rule as the library's, without importing it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _from_hf_hub(repo: str) -> Path:
    """The local snapshot folder of ``hf-hub:owner/repo`` (downloaded when online)."""
    from cnnlab.models.hub import CONFIG_FILE, README_FILE, WEIGHTS_FILE

    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ModelError(f"'{HF_PREFIX}{repo}' must name a repository as hf-hub:owner/repo")
    try:
        import huggingface_hub
    except ImportError:
        raise ModelError(f"'{HF_PREFIX}{repo}' needs the huggingface_hub package (pip install "
                         f"huggingface_hub; it caches in {hf_cache_dir()}); or download the "
                         f"repository's {CONFIG_FILE} and {WEIGHTS_FILE} into a folder and "
                         f"pass that folder") from None
    cache = getattr(getattr(huggingface_hub, "constants", None), "HF_HUB_CACHE", None)
    try:
        folder = huggingface_hub.snapshot_download(
            repo, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, README_FILE])
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, no rights: all one line
        raise ModelError(f"cannot get '{HF_PREFIX}{repo}' ({type(e).__name__}): it is not in "
                         f"the Hugging Face cache {cache or hf_cache_dir()} and the Hub could "
                         f"not be reached; fill the cache while online with `huggingface-cli "
                         f"download {repo}`, or pass a local folder") from None
    return Path(folder)


def resolve_folder(source: str | os.PathLike) -> Path:
    """A model folder for a tag, a folder or ``hf-hub:owner/repo`` (ModelError naming what
    was tried)."""
    text = os.fspath(source)
    if text.startswith(HF_PREFIX):
        return _from_hf_hub(text[len(HF_PREFIX):])
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        raise ModelError(f"{path} is a weights file, not a model folder; load it with "
                         f"cnnlab.create_model(NAME, pretrained={str(path)!r})")
    looks_like_path = "/" in text or os.sep in text or text.startswith(".")
    if looks_like_path:
        raise ModelError(f"model folder {path} does not exist; write one with "
                         f"cnnlab.save_pretrained or `cnnlab export RUN_DIR {path}`")
    shipped = SHIPPED_DIR / text
    if (shipped / "config.json").is_file():
        return shipped
    tags = list(list_pretrained())
    close = close_matches(text, tags, n=2)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelError(f"no model folder or shipped tag '{text}'{hint} (shipped: "
                     f"{', '.join(tags) or 'none'}; or hf-hub:owner/repo)")


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a torch checkpoint (a plain state dict, or
    one under "state_dict", "model" or "state_dict_ema"), wrapper prefixes stripped."""
    from cnnlab.models.hub import _strip_prefixes

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: one line
        raise ModelError(f"cannot read weights from {path}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''}") from None
    if isinstance(state, Mapping) and not all(isinstance(v, torch.Tensor) for v in
                                              state.values()):
        for key in ("state_dict", "model", "state_dict_ema", "model_state_dict"):
            inner = state.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor)
                                                            for v in inner.values()):
                state = inner
                break
        else:
            raise ModelError(f"{path} holds no state dict (a mapping of names to tensors, "
                             f"plain or under 'state_dict' / 'model')")
    return _strip_prefixes(state)


def create_pretrained(name: str, pretrained, num_classes: int | None, in_chans: int,
                      kwargs: Mapping) -> nn.Module:
    """``create_model(name, pretrained=...)``: build ``name`` and load the weights (see the
    module docstring); the model comes back in training mode, with ``model.card`` when
    the weights came with one."""
    from cnnlab.models.hub import CONFIG_FILE, LEGACY_CARD_FILE, WEIGHTS_FILE, read_card

    source = default_tag(name) if pretrained is True else pretrained
    if not isinstance(source, str | os.PathLike):
        raise ModelError(f"pretrained must be True, a shipped tag, a folder, a weights file or "
                         f"'hf-hub:owner/repo', got {pretrained!r}")
    path = Path(os.fspath(source)).expanduser()
    card = None
    if path.is_file():
        state, where = read_weights_file(path), str(path)
        args = dict(kwargs)
    else:
        folder = resolve_folder(source)
        if not ((folder / CONFIG_FILE).is_file() or (folder / LEGACY_CARD_FILE).is_file()):
            raise ModelError(f"model folder {folder} has no {CONFIG_FILE}")
        card = read_card(folder)
        if card["name"] != name:
            raise ModelError(f"the weights '{source}' are for '{card['name']}', not '{name}': "
                             f"create_model({card['name']!r}, pretrained={str(source)!r})")
        if int(card["in_chans"]) != in_chans:
            raise ModelError(f"the weights '{source}' take {card['in_chans']}-channel images; "
                             f"asked for in_chans={in_chans}")
        state = read_weights_file(folder / WEIGHTS_FILE)
        where = str(folder / WEIGHTS_FILE)
        args = {**(card.get("args") or {}), **kwargs}  # the user's kwargs win (drop_path...)
    return _build_and_convert(name, state, where, num_classes, in_chans, args, card)


def _build_and_convert(name: str, state: Mapping[str, torch.Tensor], where: str,
                       num_classes: int | None, in_chans: int, args: Mapping,
                       card: Mapping | None) -> nn.Module:
    from cnnlab.models.keymaps import convert_state_dict, head_classes
    from cnnlab.models.registry import create_model

    with torch.device("meta"):  # names and shapes only, to read the checkpoint's head
        probe = create_model(name, num_classes=num_classes or 10, in_chans=in_chans, **args)
    classes = head_classes(state, probe) or (card or {}).get("num_classes") or num_classes
    if classes is None:
        raise ModelError(f"cannot tell the class count of {where}: no tensor maps to "
                         f"'{name}'.fc.weight")
    model = create_model(name, num_classes=int(classes), in_chans=in_chans, **args)
    converted, layout = convert_state_dict(state, model, where=where)
    model.load_state_dict(converted, strict=True)
    if num_classes is not None and num_classes != int(classes):
        model.reset_classifier(num_classes)  # a new head for the new task
        model.model_num_classes = num_classes
    model.pretrained_source = {"source": where, "layout": layout}
    if card is not None and (num_classes is None or num_classes == int(classes)):
        model.card = dict(card)
    return model
