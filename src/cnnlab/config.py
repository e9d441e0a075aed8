"""Run configuration: frozen dataclasses, TOML loading and dotted overrides.

A run is described by four groups of keys, ``data.*``, ``model.*``, ``optim.*`` and
``train.*``.  ``model.*`` is open: besides ``model.name`` every key is passed to the
model builder (``model.blocks=3`` becomes ``create_model(..., blocks=3)``), and the
registry checks it against the builder's signature.

    cfg = load_config("run.toml", overrides=["optim.lr=3e-3", "model.blocks=4"])
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class DataConfig:
    spec: str = "digits"  # dataset spec string: "cifar10", "folder:PATH", "digits", ...
    batch_size: int = 32  # Keras default; small data (digits) needs the steps
    eval_batch_size: int = 512
    val_fraction: float = 0.1  # carved from the training split, seeded
    test_fraction: float = 0.2  # only for sources without an official test split
    split_seed: int = 0  # seed of the test/val carving: fixed across runs of a sweep
    augment: Any = "none"  # preset name or list of operation tables (see data/augment.py)
    normalize: bool = True
    drop_last: bool = True
    root: str = ""  # cache/data folder override ("" = default)
    resize: int = 0  # 0 = keep; otherwise square side for folder sources of mixed sizes
    skip_bad: bool = False  # folder sources: skip unreadable image files with a warning
    limit: int = 0  # 0 = all; else keep the first N training images (quick runs)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "vgg"
    args: dict = field(default_factory=dict)  # builder keyword arguments


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # sgd | adam | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.0
    decay_mode: str = "auto"  # coupled (L2 in the gradient) | decoupled (AdamW) | auto (by name)
    decay_norm_and_bias: bool = False  # exclude norm and bias parameters by default
    # constant | step | cosine | onecycle | warmup-linear | warmup-cosine
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_epochs: float = 30.0  # period of the step schedule
    gamma: float = 0.1  # factor of the step schedule
    min_lr_ratio: float = 0.0  # floor of cosine / linear decay, as a fraction of lr
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # 0 = off; max global gradient norm
    l1: float = 0.0  # penalty weights added to the loss (see cnnlab.train.regularizers)
    l2: float = 0.0
    group_lasso: float = 0.0
    proximal_l1: bool = False


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: str = "auto"  # auto | true | false
    compile: bool = False
    threads: int = 0  # 0 = torch default
    tta: str = "none"  # none | flip | flip-translate
    early_stopping: bool = False
    monitor: str = "val_acc"
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True
    checkpoint: bool = True
    checkpoint_every: int = 0  # also save every N optimizer steps (0 = only at epoch end)
    precise_bn: int = 0  # batches used to recompute BN statistics after training (0 = off)
    quiet: bool = False


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {
            "data": dataclasses.asdict(self.data),
            "model": {"name": self.model.name, **self.model.args},
            "optim": dataclasses.asdict(self.optim),
            "train": dataclasses.asdict(self.train),
        }

    def flat(self) -> dict[str, Any]:
        """Dotted keys to values, e.g. ``{"optim.lr": 0.001, ...}``."""
        return {f"{g}.{k}": v for g, d in self.to_dict().items() for k, v in d.items()}

    def set(self, **dotted: Any) -> RunConfig:
        """Return a copy with dotted keys replaced: ``cfg.set(**{"optim.lr": 0.1})``."""
        return apply_overrides(self, dotted)


GROUPS = {"data": DataConfig, "optim": OptimConfig, "train": TrainConfig}
# Keys whose run-to-run change does not alter the result (allowed on resume).
RESUME_SAFE_KEYS = {
    "train.epochs", "train.device", "train.quiet", "train.threads", "train.checkpoint_every",
    "data.root", "data.eval_batch_size", "train.early_stopping", "train.patience",
}


def _coerce(value: Any, like: Any, key: str) -> Any:
    """Convert a parsed value to the type of the default ``like``."""
    if like is None or isinstance(like, dict) or key == "data.augment":
        return value
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if isinstance(like, tuple):
        if isinstance(value, list | tuple):
            return tuple(float(v) for v in value)
        raise ConfigError(f"{key} must be a list, got {value!r}")
    if isinstance(like, int):
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if isinstance(like, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if isinstance(like, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value`` as a TOML value, else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _unknown_key(key: str, known: list[str]) -> ConfigError:
    return ConfigError(f"unknown config key '{key}'{did_you_mean(key, known, n=3)}")


def known_keys() -> list[str]:
    keys = [f"{g}.{f.name}" for g, cls in GROUPS.items() for f in fields(cls)]
    return keys + ["model.name"]


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any] | list[str]) -> RunConfig:
    """Apply dotted overrides (a dict, or ``["k=v", ...]`` strings) to ``cfg``."""
    if isinstance(overrides, list):
        parsed = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override '{item}' must look like key=value")
            k, v = item.split("=", 1)
            parsed[k.strip()] = parse_value(v.strip())
        overrides = parsed
    groups = {"data": {}, "optim": {}, "train": {}}
    model_name, model_args = cfg.model.name, dict(cfg.model.args)
    for key, value in overrides.items():
        group, _, name = key.partition(".")
        if group == "model" and name:
            if name == "name":
                model_name = str(value)
            else:
                model_args[name] = value
            continue
        if group not in GROUPS or not name:
            raise _unknown_key(key, known_keys())
        defaults = {f.name: getattr(getattr(cfg, group), f.name) for f in fields(GROUPS[group])}
        if name not in defaults:
            raise _unknown_key(key, known_keys())
        groups[group][name] = _coerce(value, defaults[name], key)
    new = RunConfig(
        data=replace(cfg.data, **groups["data"]),
        model=ModelConfig(model_name, model_args),
        optim=replace(cfg.optim, **groups["optim"]),
        train=replace(cfg.train, **groups["train"]),
    )
    validate(new)
    return new


def _flatten(table: dict) -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}, "train.epochs": 3}`` -> ``{"optim.lr": 0.1, "train.epochs": 3}``
    (one level: values below a group, such as inline augment tables, stay as they are)."""
    out = {}
    for k, v in table.items():
        if k in ("data", "model", "optim", "train") and isinstance(v, dict):
            out.update({f"{k}.{name}": value for name, value in v.items()})
        else:
            out[k] = v
    return out


def from_dict(table: dict, base: RunConfig | None = None) -> RunConfig:
    """Build a config from nested ``{"optim": {"lr": ...}}`` or flat dotted tables."""
    return apply_overrides(base or RunConfig(), _flatten(table))


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """Parse a TOML file; a missing file or a syntax error is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict | None = None
) -> RunConfig:
    """Load a TOML run file (optional) then apply overrides."""
    cfg = RunConfig()
    if path is not None:
        cfg = from_dict(read_toml(path), cfg)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


CHOICES = {
    "optim.name": ("sgd", "adam", "adamw"),
    "optim.decay_mode": ("auto", "coupled", "decoupled"),
    "optim.schedule": (
        "constant", "step", "cosine", "onecycle", "warmup-linear", "warmup-cosine",
    ),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.channels_last": ("auto", "true", "false"),
    "train.tta": ("none", "flip", "flip-translate"),
    "train.monitor": ("val_acc", "val_loss", "train_loss", "train_acc"),
}


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError naming the key and the allowed values on the first bad setting."""
    flat = cfg.flat()
    for key, allowed in CHOICES.items():
        value = flat[key]
        if value not in allowed:
            raise ConfigError(f"{key} = {value!r} is not one of {', '.join(allowed)}"
                              f"{did_you_mean(value, allowed)}")
    if cfg.data.batch_size < 1:
        raise ConfigError(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    if cfg.data.eval_batch_size < 1:
        raise ConfigError(f"data.eval_batch_size must be >= 1, got {cfg.data.eval_batch_size}")
    if not cfg.optim.lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {cfg.train.epochs}")
    for key in ("data.val_fraction", "data.test_fraction"):
        if not 0 <= flat[key] < 1:
            raise ConfigError(f"{key} must be in [0, 1), got {flat[key]}")
    if cfg.optim.weight_decay < 0:
        raise ConfigError(f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}")
    if not 0 <= cfg.optim.label_smoothing < 1:
        raise ConfigError(
            f"optim.label_smoothing must be in [0, 1), got {cfg.optim.label_smoothing}"
        )


def config_diff(a: dict, b: dict, ignore: set[str] = frozenset()) -> list[str]:
    """Dotted keys whose values differ between two flat config dicts (JSON-normalised)."""
    norm = lambda d: json.loads(json.dumps(d, default=str))  # noqa: E731 (tuples -> lists)
    a, b = norm(a), norm(b)
    return sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))
