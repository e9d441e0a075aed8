"""Share trained models in the layout of the Hugging Face Hub: a folder with the weights,
a config saying how to rebuild and feed the model, and a model card for people.

    MODEL_DIR/config.json         architecture (registered name), model_args, num_classes,
                                  label_names, pretrained_cfg (input size, mean/std,
                                  interpolation), and a "cnnlab" section: dataset, metrics,
                                  training (recipe, seed, command), versions
    MODEL_DIR/model.safetensors   the state dict (parameters and buffers), safetensors
    MODEL_DIR/README.md           the model card: metrics, data, recipe, command, usage

The keys of config.json follow timm's Hub configs (``architecture``, ``num_classes``,
``model_args``, ``label_names``, ``pretrained_cfg``) so the folder reads as people expect;
folders of the first format (``card.json``) still load.

``save_pretrained(model, dir, ...)`` writes the three files (weights first, the config
last, each atomically: a folder with a config is complete); ``load_pretrained(source)``
rebuilds the model with ``create_model`` and loads the weights exactly (its outputs equal
the saved model's bit for bit); ``source`` is a folder, a tag of cnnlab's shipped weights
(``cifar10-resnet20``) or ``hf-hub:owner/repo`` (:mod:`cnnlab.models.weights`).
``predict(source, images)`` reads image files of any size and mode, converts and resizes
them as the config says, and returns the top-k classes; ``export_run(run, dir)`` turns a
training run folder into such a model folder.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

import cnnlab
from cnnlab.errors import CnnlabError, DataError, ModelError
from cnnlab.models.registry import builder_params, count_params, create_model, get_entry

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
README_FILE = "README.md"
LEGACY_CARD_FILE = "card.json"  # format 1 (before the Hub layout)
CARD_FORMAT = "cnnlab-model"
CARD_VERSION = 2
MODES = {1: "L", 3: "RGB"}  # channels -> PIL mode images are converted to


def _json_ready(value, what: str):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        raise ModelError(f"{what} must be JSON data (numbers, strings, lists, dicts), got "
                         f"{value!r}") from None


def _side_pair(size, what: str) -> list[int]:
    if isinstance(size, int | float):
        pair = [int(size), int(size)]
    elif isinstance(size, Sequence) and len(size) == 2:
        pair = [int(size[0]), int(size[1])]
    else:
        raise ModelError(f"{what} must be N or (H, W), got {size!r}")
    if min(pair) < 1:
        raise ModelError(f"{what} must be positive, got {size!r}")
    return pair


def _floats(values, channels: int, what: str) -> list[float] | None:
    if values is None:
        return None
    out = [float(v) for v in (values if isinstance(values, Sequence) else [values])]
    if len(out) == 1 and channels > 1:
        out = out * channels
    if len(out) != channels:
        raise ModelError(f"{what} needs one value per channel ({channels}), got {len(out)}")
    return out


def _default_input_size(model: nn.Module, name: str) -> int | list[int]:
    for source in (getattr(model, "model_args", {}).get("input_size"),
                   getattr(model, "input_size", None)):
        if source is not None:
            return source
    try:
        return get_entry(name).default_input
    except CnnlabError:
        return 224  # an external model: the libraries' usual size


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    *,
    dataset: str | None = None,
    classes: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    metrics: Mapping | None = None,
    input_size: int | Sequence[int] | None = None,
    training: Mapping | None = None,
    title: str | None = None,
    extra: Mapping | None = None,
) -> Path:
    """Write ``model`` (built by ``create_model``) to ``directory`` in the Hub layout:
    ``model.safetensors``, ``README.md`` (the model card) and ``config.json``.

    ``mean``/``std`` are per-channel in [0, 1] pixel units (None: the model takes [0, 1]
    pixels); ``input_size`` is the side (or (H, W)) images are resized to (default: the
    size the model was built for, else its family's native size). ``training`` says how
    the weights were made, for the card: ``recipe`` (a name or a table of settings),
    ``seed``, ``command``, ``data`` (spec, split sizes, ...). ``title`` heads the card.
    Returns the folder."""
    from safetensors.torch import save as st_save

    from cnnlab.models.card import render_card
    from cnnlab.utils.io import atomic_write, atomic_write_json, atomic_write_text

    name = getattr(model, "model_name", None)
    if not name:
        raise ModelError("save_pretrained needs a model built by cnnlab.create_model (it "
                         "records the name and arguments that rebuild it)")
    args = _json_ready({k: v for k, v in dict(getattr(model, "model_args", {})).items()
                        if k != "pretrained"}, f"the arguments of '{name}'")
    num_classes = getattr(model, "num_classes", None)
    if not isinstance(num_classes, int):
        num_classes = int(getattr(model, "model_num_classes", 0))
    in_chans = int(getattr(model, "model_in_chans", getattr(model, "in_chans", 3)))
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(classes) != num_classes:
            raise ModelError(f"{len(classes)} class names given for a model with "
                             f"{num_classes} outputs")
    size = _side_pair(input_size if input_size is not None
                      else _default_input_size(model, name), "input_size")
    card = {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "name": name,
        "args": args,
        "num_classes": num_classes,
        "in_chans": in_chans,
        "classes": classes,
        "input_size": size,  # [H, W] images are resized to (bilinear)
        "channels": in_chans,
        "image_mode": MODES.get(in_chans),
        "resize": "bilinear",
        "mean": _floats(mean, in_chans, "mean"),  # [0, 1] pixel units
        "std": _floats(std, in_chans, "std"),
        "dataset": dataset,
        "metrics": _json_ready(dict(metrics), "metrics") if metrics is not None else None,
        "training": _json_ready(dict(training), "training") if training is not None else None,
        "title": title,
        "params": count_params(model),
        "versions": {"cnnlab": cnnlab.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if extra:
        card.update(_json_ready(dict(extra), "extra card fields"))
    if card["std"] is not None and min(card["std"]) <= 0:
        raise ModelError(f"std values must be > 0, got {card['std']}")

    tensors, seen = {}, set()
    for key, t in model.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset())
        if ptr in seen:  # safetensors refuses tensors sharing memory
            t = t.clone()
        seen.add(ptr)
        tensors[key] = t
    blob = st_save(tensors, metadata={"format": "pt", "model": name})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / WEIGHTS_FILE, lambda f: f.write(blob))
    atomic_write_text(directory / README_FILE, render_card(card))
    atomic_write_json(directory / CONFIG_FILE, card_to_config(card))
    return directory


# card (the flat dict cnnlab reads) <-> config.json (the Hub layout, timm's key names)
_PRETRAINED_CFG = ("input_size", "mean", "std", "interpolation", "image_mode")
_TOP = ("format", "format_version", "name", "args", "num_classes", "in_chans", "classes",
        "input_size", "channels", "image_mode", "resize", "mean", "std")


def card_to_config(card: Mapping) -> dict:
    """The config.json of a card: timm's top-level keys, cnnlab's extras under "cnnlab"."""
    h, w = card["input_size"]
    return {
        "architecture": card["name"],
        "num_classes": card["num_classes"],
        "in_chans": card["in_chans"],
        "model_args": card.get("args") or {},
        "label_names": card.get("classes"),
        "pretrained_cfg": {
            "input_size": [card["in_chans"], h, w],  # (C, H, W), as timm writes it
            "mean": card.get("mean"),  # [0, 1] pixel units; null: no normalization
            "std": card.get("std"),
            "interpolation": card.get("resize", "bilinear"),
            "image_mode": card.get("image_mode"),
        },
        "cnnlab": {"format": CARD_FORMAT, "format_version": card.get("format_version",
                                                                     CARD_VERSION),
                   **{k: v for k, v in card.items() if k not in _TOP}},
    }


def config_to_card(config: Mapping, where: str) -> dict:
    """The flat card of a config.json (ModelError naming the file if it is not one)."""
    ours = config.get("cnnlab") if isinstance(config, Mapping) else None
    if not isinstance(ours, Mapping) or ours.get("format") != CARD_FORMAT:
        hint = (" (it looks like a training run folder: export it with `cnnlab export RUN_DIR "
                "OUT_DIR`)" if isinstance(config, Mapping) and "dataset" in config else "")
        raise ModelError(f"{where} is not a cnnlab model config (no \"cnnlab\" section of "
                         f"format {CARD_FORMAT!r}){hint}")
    try:
        pcfg = dict(config.get("pretrained_cfg") or {})
        c, h, w = (int(v) for v in pcfg["input_size"])
        card = {
            "format": CARD_FORMAT, "format_version": int(ours.get("format_version", 0)),
            "name": str(config["architecture"]), "args": dict(config.get("model_args") or {}),
            "num_classes": int(config["num_classes"]),
            "in_chans": int(config.get("in_chans", c)), "classes": config.get("label_names"),
            "input_size": [h, w], "channels": c,
            "image_mode": pcfg.get("image_mode", MODES.get(c)),
            "resize": pcfg.get("interpolation", "bilinear"),
            "mean": pcfg.get("mean"), "std": pcfg.get("std"),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{where} lacks or garbles {e}: needs architecture, num_classes and "
                         f"pretrained_cfg.input_size") from None
    card.update({k: v for k, v in ours.items() if k not in ("format", "format_version")})
    return card


def read_card(directory: str | Path) -> dict:
    """The card of a model folder: its config.json (or card.json of format 1) as one flat
    dict (ModelError if the folder is not a model folder)."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    legacy = directory / LEGACY_CARD_FILE
    if not path.is_file() and not legacy.is_file():
        what = "does not exist" if not directory.exists() else f"has no {CONFIG_FILE}"
        raise ModelError(f"model folder {directory} {what}; write one with "
                         f"cnnlab.save_pretrained or `cnnlab export RUN_DIR {directory}`")
    if not path.is_file() or (legacy.is_file() and not _is_model_config(path)):
        path = legacy
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ModelError(f"{path} is not valid JSON: {e}") from None
    if path.name == CONFIG_FILE:
        card = config_to_card(data, str(path))
    else:
        card = data
        if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
            raise ModelError(f"{path} is not a cnnlab model card (format {CARD_FORMAT!r})")
    if int(card.get("format_version", 0)) > CARD_VERSION:
        raise ModelError(f"{path} has card format {card['format_version']}; this cnnlab reads "
                         f"up to {CARD_VERSION}: upgrade cnnlab")
    return card


def _is_model_config(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()).get("cnnlab"), dict)
    except (ValueError, AttributeError):
        return False


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelError(f"{path} is missing: the model folder is incomplete")
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure means a damaged file
        raise ModelError(f"{path} is not a readable safetensors file: {e}") from None


def _load_into(model: nn.Module, state: Mapping[str, torch.Tensor], where: str,
               assign: bool = False) -> None:
    """``load_state_dict`` (strict) with a one-line ModelError naming what does not fit.

    A model may rename the keys of an older layout while loading (as torch's BatchNorm
    does), so the keys are compared only when loading fails."""
    try:
        model.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as e:
        raise ModelError(_misfit(model, state, where, e)) from None


def _misfit(model: nn.Module, state: Mapping[str, torch.Tensor], where: str,
            error: RuntimeError) -> str:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected[:3])}"
                     + (" ..." if len(unexpected) > 3 else ""))
    if shapes:
        parts.append(f"shape {'; '.join(shapes[:2])}" + (" ..." if len(shapes) > 2 else ""))
    if not parts:
        parts.append(str(error).strip().splitlines()[-1][:200])
    return (f"the weights in {where} do not fit "
            f"'{getattr(model, 'model_name', type(model).__name__)}': " + "; ".join(parts))


def build_and_load(name: str, num_classes: int, in_chans: int, args: Mapping,
                   state: Mapping[str, torch.Tensor], where: str) -> nn.Module:
    """``create_model`` then load ``state`` exactly. The model is first built on the meta
    device (no time spent on random init) and the loaded tensors are assigned; a model
    that keeps other tensors is built for real instead."""
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_chans=in_chans, **args)
    except (NotImplementedError, RuntimeError):
        model = None
    if model is not None:
        # fresh, allocator-aligned copies: tensors read from a file may sit at any address,
        # and CPU kernels then take other SIMD paths (outputs would differ in the last bit)
        state = {k: v.clone(memory_format=torch.contiguous_format) for k, v in state.items()}
        _load_into(model, state, where, assign=True)
        if not any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
            return model.eval()
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, **args)
    _load_into(model, state, where)
    return model.eval()


def load_pretrained(source: str | Path, map_location: str | torch.device = "cpu"
                    ) -> nn.Module:
    """Rebuild the model of a folder written by ``save_pretrained`` and load its weights;
    ``source`` is that folder, a shipped tag (``cifar10-resnet20``, see
    ``cnnlab.list_pretrained()``) or ``hf-hub:owner/repo``. Returned in eval mode on
    ``map_location``, with the card as ``model.card``."""
    from cnnlab.models.weights import resolve_folder

    directory = resolve_folder(source)
    card = read_card(directory)
    state = _load_state(directory / WEIGHTS_FILE)
    model = build_and_load(card["name"], int(card["num_classes"]), int(card["in_chans"]),
                           card.get("args") or {}, state, str(directory / WEIGHTS_FILE))
    model.card = card
    return model.to(map_location)


# ---------------------------------------------------------------------------------------
# prediction


def _to_uint8_mode(img):
    """16/32-bit and float grayscale images -> 8-bit "L" (scaled, not clipped)."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if img.mode == "F" and arr.max(initial=0) <= 1.0:
            top = 1.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L")
    return img


def _image_error(message: str, reason: str) -> DataError:
    """A DataError whose ``reason`` says what is wrong without the path (the CLI prefixes
    the path itself)."""
    error = DataError(message)
    error.reason = reason
    return error


def load_image(path: str | Path, card: Mapping) -> torch.Tensor:
    """One image file -> (C, H, W) float tensor as the model expects: orientation from
    EXIF, transparency composited on white, converted to the card's mode, resized
    (bilinear) to its input size, scaled to [0, 1] and normalized with its mean/std."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    channels = int(card.get("channels") or card["in_chans"])
    mode = MODES.get(channels)
    if mode is None:
        raise ModelError(f"predict reads 1- or 3-channel images; this model takes {channels}")
    try:
        with Image.open(path) as im:
            im.load()
            img = ImageOps.exif_transpose(im) or im
    except FileNotFoundError:
        raise _image_error(f"image {path} does not exist", "no such file") from None
    except IsADirectoryError:
        raise _image_error(f"cannot read image {path}: it is a folder",
                           "is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise _image_error(f"cannot read image {path}: not an image Pillow can decode",
                           "not an image (Pillow cannot decode it)") from None
    except OSError as e:
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise _image_error(f"cannot read image {path}: {reason}",
                           f"cannot read image: {reason}") from None
    img = _to_uint8_mode(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    img = img.convert(mode)
    h, w = card["input_size"]
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8).reshape(h, w, channels)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)  # (C, H, W) in [0, 1]
    if card.get("mean") is not None and card.get("std") is not None:
        mean = torch.tensor(card["mean"]).view(-1, 1, 1)
        std = torch.tensor(card["std"]).view(-1, 1, 1)
        x = (x - mean) / std
    return x


def predict(model_dir: str | Path | nn.Module, image_paths: Sequence[str | Path],
            topk: int = 5, batch_size: int = 64, device: str | torch.device = "cpu",
            errors: str = "raise") -> list:
    """Top-``topk`` (class name, probability) pairs for each image file, best first.

    ``model_dir`` is a model folder (or a model returned by ``load_pretrained``).
    ``errors="raise"``: a missing or unreadable file raises its DataError;
    ``errors="return"``: its entry in the result is that DataError (with a ``reason``
    attribute) and the other files are still predicted."""
    if errors not in ("raise", "return"):
        raise ModelError(f"errors must be 'raise' or 'return', got {errors!r}")
    if topk < 1:
        raise ModelError(f"topk must be >= 1, got {topk}")
    model = load_pretrained(model_dir, device) if not isinstance(model_dir, nn.Module) \
        else model_dir.to(device).eval()
    card = getattr(model, "card", None)
    if card is None:
        raise ModelError("predict needs a model folder or a model from load_pretrained")
    names = card.get("classes") or [str(i) for i in range(int(card["num_classes"]))]
    k = min(topk, len(names))
    out: list = []
    paths = list(image_paths)
    for start in range(0, len(paths), batch_size):
        chunk: list = []
        for p in paths[start:start + batch_size]:
            try:
                chunk.append(load_image(p, card))
            except DataError as e:
                if errors == "raise":
                    raise
                chunk.append(e)
        good = [t for t in chunk if isinstance(t, torch.Tensor)]
        tops = iter([])
        if good:
            with torch.no_grad():
                probs = model(torch.stack(good).to(device)).float().softmax(dim=1)  # (B, C)
            top = probs.topk(k, dim=1)
            tops = iter([[(names[i], float(v)) for v, i in zip(vals, idx)]
                         for vals, idx in zip(top.values.tolist(), top.indices.tolist())])
        out.extend(next(tops) if isinstance(t, torch.Tensor) else t for t in chunk)
    return out


# ---------------------------------------------------------------------------------------
# export of a training run


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys saved from torch.compile'd or DataParallel models carry a wrapper prefix."""
    out = {}
    for k, v in state.items():
        for prefix in ("_orig_mod.", "module."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def load_run_model(run_dir: str | Path, which: str = "best") -> nn.Module:
    """Rebuild the model of a training run folder and load ``checkpoints/<which>.pt``
    (key "model"); returned in eval mode on the CPU, with ``model.run_info`` holding the
    run's ``config.json`` and the checkpoint path. One-line ModelErrors for a folder that
    is not a run, a missing or unreadable checkpoint and weights that do not fit."""
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise ModelError(f"which checkpoint: 'best' or 'last', got {which!r}")
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        what = "does not exist" if not run_dir.exists() else "has no config.json"
        raise ModelError(f"run folder {run_dir} {what}; pass the folder `cnnlab train` wrote")
    try:
        run_cfg = json.loads(cfg_path.read_text())
        model_cfg = dict(run_cfg["config"]["model"])
        ds = dict(run_cfg["dataset"])
        name = model_cfg.pop("name")
        h, w, c = (int(v) for v in ds["image_shape"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{cfg_path} is not a cnnlab run config (needs config.model.name "
                         f"and dataset.image_shape): {e!r}") from None
    classes = ds.get("classes")
    num_classes = int(ds.get("num_classes") or len(classes or []))
    if num_classes < 1:
        raise ModelError(f"{cfg_path} gives no class count (dataset.num_classes)")

    ckpt_path = run_dir / "checkpoints" / f"{which}.pt"
    if not ckpt_path.is_file():
        other = "last" if which == "best" else "best"
        raise ModelError(f"{ckpt_path} does not exist; the run has no '{which}' checkpoint "
                         f"(try --which {other})")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        state = _strip_prefixes(ckpt["model"])
    except Exception as e:  # noqa: BLE001 - unpickling failures of any kind
        raise ModelError(f"cannot read weights from {ckpt_path}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''}") from None

    # The builder arguments: those the trainer recorded from the built model (top-level
    # "model"), else config.model plus what the trainer adds: the image side as input_size
    # when the builder takes one (stem="auto" chooses by it; the stems of some families
    # differ only in strides, so the weights alone could not tell).
    built = run_cfg.get("model") if isinstance(run_cfg.get("model"), dict) else {}
    if built.get("name") == name and isinstance(built.get("args"), dict):
        attempts = [dict(built["args"])]
    else:
        attempts = []
        if "input_size" not in model_cfg and "input_size" in builder_params(name):
            attempts.append({**model_cfg, "input_size": h})
        attempts.append(model_cfg)
    error: ModelError | None = None
    for args in attempts:
        try:
            model = build_and_load(name, num_classes, c, args, state, str(ckpt_path))
            break
        except ModelError as e:
            error = error or e
    else:
        raise error  # type: ignore[misc]
    model.run_info = {"config": run_cfg, "checkpoint": str(ckpt_path)}
    return model


def export_run(run_dir: str | Path, out_dir: str | Path, which: str = "best",
               training: Mapping | None = None, extra: Mapping | None = None) -> Path:
    """Make a model folder from a training run folder: its ``config.json`` says which model
    on which dataset, ``checkpoints/<which>.pt`` holds the weights (key "model"),
    ``summary.json`` the metrics; ``training`` (recipe, seed, command, data) goes on the
    card as it is (``cnnlab.export_run`` fills it from the run's config). Returns
    ``out_dir``."""
    run_dir = Path(run_dir)
    model = load_run_model(run_dir, which)
    run_cfg = model.run_info["config"]
    data_cfg = dict(run_cfg["config"].get("data") or {})
    ds = dict(run_cfg["dataset"])
    h, w, _ = (int(v) for v in ds["image_shape"])
    classes = ds.get("classes")
    metrics = None
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        try:
            metrics = json.loads(summary_path.read_text())
        except ValueError:
            metrics = None
    normalized = data_cfg.get("normalize", True) is not False
    return save_pretrained(
        model, out_dir, dataset=ds.get("name"), classes=classes,
        mean=ds.get("mean") if normalized else None, std=ds.get("std") if normalized else None,
        metrics=metrics, input_size=(h, w), training=training,
        extra={"source_run": str(run_dir.resolve()), "checkpoint": which, **(extra or {})},
    )

