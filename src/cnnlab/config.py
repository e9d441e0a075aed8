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
    spec: str = "digits"  # dataset spec: "digits", "cifar10", "folder:PATH", ... (cnnlab data info)
    batch_size: int = 32  # training batch size (Keras default; small data needs the steps)
    eval_batch_size: int = 512  # batch size of validation and test passes
    val_fraction: float = 0.1  # share of the training split held out for validation (seeded)
    test_fraction: float = 0.2  # share held out for testing, for sources without a test split
    split_seed: int = 0  # seed of the test/val carving: fixed across runs of a sweep
    augment: Any = "none"  # augmentation preset or list of op tables (cnnlab augment)
    normalize: bool = True  # standardize pixels with the training split's mean and std
    drop_last: bool = True  # drop the last incomplete training batch of each epoch
    root: str = ""  # cache/data folder override ("" = default)
    resize: int = 0  # square side to resize to, for folders of mixed sizes (0 = keep)
    skip_bad: bool = False  # folder sources: skip unreadable image files with a warning
    limit: int = 0  # keep N training images drawn with split_seed, for quick runs (0 = all)
    train_size: int = 0  # seeded, class-stratified subset of N training images (0 = all)
    label_noise: float = 0.0  # share of training labels replaced by a random class (0..1)
    label_noise_to: str = "other"  # other: never the true class; any: all K (1.0 = random labels)
    pixels: str = "keep"  # keep; shuffled (one fixed permutation, all splits); random; gaussian
    treatment_seed: int = 0  # seed of train_size, label_noise and pixels (splits use split_seed)
    # horizontal flips as per-image state: epoch 0 flips a seeded random half, each later
    # epoch flips exactly the images the previous one did not (Jordan 2024); use it instead
    # of an hflip op in data.augment
    alternating_flip: bool = False
    low_res: int = 0  # progressive resizing: side of the training images in early epochs (0 = off)
    low_res_epochs: int = 0  # how many first epochs train at data.low_res


@dataclass(frozen=True)
class ModelConfig:
    name: str = "vgg"  # registered model name (cnnlab models); other model.* keys go to it
    args: dict = field(default_factory=dict)  # builder keyword arguments


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # optimizer
    lr: float = 1e-3  # peak learning rate (> 0)
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # Nesterov momentum (SGD)
    betas: tuple = (0.9, 0.999)  # Adam / AdamW moment decay rates
    weight_decay: float = 0.0  # weight decay factor (>= 0)
    decay_mode: str = "auto"  # coupled: L2 in the gradient; decoupled: AdamW; auto: by optimizer
    decay_norm_and_bias: bool = False  # also decay norm and bias parameters (excluded by default)
    schedule: str = "constant"  # learning-rate schedule over the run
    warmup_epochs: float = 0.0  # epochs of linear warm-up (warmup-* schedules)
    warmup_from: float = 0.0  # lr factor the warm-up starts from, in [0, 1) (the record: 0.2)
    step_epochs: float = 30.0  # period of the step schedule
    gamma: float = 0.1  # factor of the step schedule
    min_lr_ratio: float = 0.0  # floor of cosine / linear decay, as a fraction of lr
    loss: str = "cross-entropy"  # training loss: cross-entropy, or mse (squared error to one-hot)
    label_smoothing: float = 0.0  # label smoothing of the cross-entropy, in [0, 1)
    grad_clip: float = 0.0  # max global gradient norm (0 = off)
    l1: float = 0.0  # weight of the L1 penalty added to the loss (cnnlab.train.regularizers)
    l2: float = 0.0  # weight of the L2 penalty added to the loss
    group_lasso: float = 0.0  # weight of the group-sparse penalty (per filter)
    proximal_l1: bool = False  # apply L1 as a proximal step after each update
    # lr and weight_decay given per 1,024 examples with the SGD step decoupled from momentum
    # (the speed records' parametrization; formula in cnnlab.train.optim.per_1024)
    per_1024: bool = False
    norm_bias_lr_scale: float = 1.0  # lr multiplier of the biases of norm layers (> 0)
    freeze_norm_scale: bool = False  # keep the scales (weights) of norm layers at 1, untrained
    muon: bool = False  # conv filters (4-D weights) by Muon, the rest by optim.name (sgd)
    muon_lr: float = 0.24  # Muon step: size of the orthogonalized update per unit weight norm
    muon_momentum: float = 0.6  # Muon's Nesterov momentum
    # layer-wise lr decay (BEiT): layer i of L trains at lr * layer_decay ** (L + 1 - i),
    # stem 0, head L + 1 (cnnlab.train.finetune); 1.0 = off
    layer_decay: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3  # training epochs (>= 1)
    seed: int = 0  # seed of initialization, data order and augmentation
    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps
    precision: str = "auto"  # autocast precision (auto: bf16 where supported)
    channels_last: str = "auto"  # channels-last memory format (auto: where faster)
    compile: bool = False  # torch.compile the model
    threads: int = 0  # CPU threads (0 = torch default)
    tta: str = "none"  # test-time augmentation of the evaluation passes
    early_stopping: bool = False  # stop when the monitored metric stops improving
    monitor: str = "val_acc"  # metric for early stopping and the best checkpoint
    patience: int = 5  # epochs without improvement before early stopping
    start_from_epoch: int = 0  # early stopping never stops before this epoch (the best counts)
    min_delta: float = 0.0  # smallest change that counts as an improvement
    restore_best: bool = True  # end with the weights of the best epoch
    target_train_acc: float = 0.0  # stop at the first epoch whose training accuracy reaches it
    test_curve: bool = False  # also evaluate the test split each epoch (curves; never monitored)
    checkpoint: bool = True  # write checkpoints (last, best) to the run folder
    checkpoint_every: int = 0  # also save every N optimizer steps (0 = only at epoch end)
    precise_bn: int = 0  # batches used to recompute BN statistics after training (0 = off)
    quiet: bool = False  # no progress bars or per-epoch lines
    tensorboard: bool = False  # also log metrics to RUN_DIR/tensorboard (cnnlab[tensorboard])
    data_init_images: int = 5000  # training images a model's init_from_data sees (whitening)
    whiten_bias_epochs: int = 0  # epochs the whitening layers' bias trains, then frozen (0 = all)
    # weight averaging: "ema" evaluates an average kept beside the weights; "lookahead" pulls
    # the weights to the average at every update (the record recipe's lookahead)
    average: str = "none"
    ema_decay: float = 0.999  # decay of the average per optimizer step, in [0, 1)
    ema_every: int = 1  # update the average every N optimizer steps (decay ** N per update)
    ema_warmup: float = 0.0  # decay x (step / total steps) ** ema_warmup (0 = constant decay)
    # fine-tuning: "backbone" trains only the classifier (the backbone's norm statistics
    # frozen too; cnnlab.train.finetune); "none" trains everything
    freeze: str = "none"


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
    "train.start_from_epoch",
    "train.tensorboard", "train.test_curve", "train.target_train_acc",
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
    "optim.loss": ("cross-entropy", "mse"),
    "optim.schedule": (
        "constant", "step", "cosine", "onecycle", "warmup-linear", "warmup-cosine",
    ),
    "data.pixels": ("keep", "shuffled", "random", "gaussian"),
    "data.label_noise_to": ("other", "any"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.channels_last": ("auto", "true", "false"),
    "train.tta": ("none", "flip", "flip-translate"),
    "train.average": ("none", "ema", "lookahead"),
    "train.monitor": ("val_acc", "val_loss", "train_loss", "train_acc"),
    "train.freeze": ("none", "backbone"),
}


def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> its trailing ``# comment`` in the class source (else the comment lines
    right above it): the help lines of ``cnnlab config`` come from these comments."""
    import inspect
    import io
    import tokenize

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source shipped
        return {}
    out: dict[str, str] = {}
    above: list[str] = []
    line_field: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            name = line_field.get(tok.start[0])
            if name:
                out[name] = text
            else:
                above.append(text)
        elif tok.type == tokenize.NAME and tok.start[1] == 4 and tok.start[0] not in line_field:
            line_field[tok.start[0]] = tok.string
            if above:
                out[tok.string] = " ".join(above)
            above = []
    return out


def _allowed(key: str, default: Any) -> list[str] | str:
    """The choices of a key (a list), else what kind of value it takes."""
    if key in CHOICES:
        return list(CHOICES[key])
    if key == "model.name":
        return "a registered model (cnnlab models)"
    if key == "data.augment":
        return "preset name or list of op tables"
    if isinstance(default, bool):
        return ["true", "false"]
    for kind, word in ((int, "integer"), (float, "number"), (str, "string"),
                       (tuple, "list of numbers")):
        if isinstance(default, kind):
            return word
    return ""


def key_table() -> list[dict[str, Any]]:
    """Every config key as ``{"key", "default", "allowed", "help"}``, in :func:`known_keys`
    order: "allowed" is the list of choices or a word for the kind of value, "help" the
    field's comment in this file (one source of truth: ``cnnlab config`` prints these)."""
    defaults = RunConfig().flat()
    helps = {f"{g}.{k}": v for g, cls in (*GROUPS.items(), ("model", ModelConfig))
             for k, v in _field_comments(cls).items()}
    rows = []
    for key in known_keys():
        default = defaults.get(key)
        rows.append({"key": key, "default": list(default) if isinstance(default, tuple)
                     else default, "allowed": _allowed(key, default),
                     "help": helps.get(key, "")})
    return rows


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
    if cfg.data.train_size < 0:
        raise ConfigError(f"data.train_size must be >= 0 (0 = all), got {cfg.data.train_size}")
    if not 0 <= cfg.data.label_noise <= 1:
        raise ConfigError(f"data.label_noise must be in [0, 1], got {cfg.data.label_noise}")
    if not cfg.optim.lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {cfg.train.epochs}")
    for key in ("data.val_fraction", "data.test_fraction"):
        if not 0 <= flat[key] < 1:
            raise ConfigError(f"{key} must be in [0, 1), got {flat[key]}")
    if cfg.optim.weight_decay < 0:
        raise ConfigError(f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}")
    if not 0 <= cfg.train.target_train_acc <= 1:
        raise ConfigError(f"train.target_train_acc must be in [0, 1] (0 = off), got "
                          f"{cfg.train.target_train_acc}")
    if cfg.data.low_res < 0 or cfg.data.low_res_epochs < 0:
        raise ConfigError(f"data.low_res and data.low_res_epochs must be >= 0, got "
                          f"{cfg.data.low_res} and {cfg.data.low_res_epochs}")
    if not 0 <= cfg.optim.warmup_from < 1:
        raise ConfigError(f"optim.warmup_from must be in [0, 1), got {cfg.optim.warmup_from}")
    if not cfg.optim.norm_bias_lr_scale > 0:
        raise ConfigError(f"optim.norm_bias_lr_scale must be > 0, got "
                          f"{cfg.optim.norm_bias_lr_scale}")
    if not cfg.optim.muon_lr > 0 or not 0 <= cfg.optim.muon_momentum < 1:
        raise ConfigError(f"optim.muon_lr must be > 0 and optim.muon_momentum in [0, 1), got "
                          f"{cfg.optim.muon_lr} and {cfg.optim.muon_momentum}")
    if not 0 < cfg.optim.layer_decay <= 1:
        raise ConfigError(f"optim.layer_decay must be in (0, 1] (1 = off), got "
                          f"{cfg.optim.layer_decay}")
    if cfg.optim.per_1024 and cfg.optim.name != "sgd":
        raise ConfigError(f"optim.per_1024 needs optim.name = 'sgd', got {cfg.optim.name!r}")
    if not 0 <= cfg.train.ema_decay < 1:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {cfg.train.ema_decay}")
    if cfg.train.ema_every < 1 or cfg.train.ema_warmup < 0:
        raise ConfigError(f"train.ema_every must be >= 1 and train.ema_warmup >= 0, got "
                          f"{cfg.train.ema_every} and {cfg.train.ema_warmup}")
    if cfg.train.data_init_images < 1 or cfg.train.whiten_bias_epochs < 0:
        raise ConfigError(f"train.data_init_images must be >= 1 and train.whiten_bias_epochs "
                          f">= 0, got {cfg.train.data_init_images} and "
                          f"{cfg.train.whiten_bias_epochs}")
    if not 0 <= cfg.optim.label_smoothing < 1:
        raise ConfigError(
            f"optim.label_smoothing must be in [0, 1), got {cfg.optim.label_smoothing}"
        )


def config_diff(a: dict, b: dict, ignore: set[str] = frozenset()) -> list[str]:
    """Dotted keys whose values differ between two flat config dicts (JSON-normalised)."""
    norm = lambda d: json.loads(json.dumps(d, default=str))  # noqa: E731 (tuples -> lists)
    a, b = norm(a), norm(b)
    return sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))
