"""Run configuration: frozen dataclasses, TOML loading, dotted overrides and recipes.

A run is described by four groups of keys, ``data.*``, ``model.*``, ``optim.*`` and
``train.*``.  ``model.*`` is open: besides ``model.name`` every key is passed to the
model builder (``model.blocks=3`` becomes ``create_model(..., blocks=3)``), and the
registry checks it against the builder's signature.

    cfg = load_config("run.toml", overrides=["optim.lr=3e-3", "model.blocks=4"])

A *recipe* is a named TOML file of such keys (``cnnlab/recipes/NAME.toml``: optimizer,
schedule, loss, augmentation, regularization; ``cnnlab recipes`` lists them). A config
names one with a top-level ``recipe = "rsb-a3"`` (or ``load_config(recipe=...)``, the
CLI's ``--recipe``); precedence, lowest first: the defaults, the recipe, the config's own
keys, the overrides. A recipe may itself start from another (``recipe = "fast"``).

    cfg = load_config(recipe="rsb-a3", overrides=["model.name='resnet20'"])
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError, did_you_mean

RECIPE_KEY = "recipe"  # top-level key of a config, sweep base or recipe file


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
    # repeated augmentation (Hoffer et al. 2020; DeiT, RSB A1/A2): each epoch draws
    # ceil(N / k) distinct images and shows each k times, copies side by side in a batch,
    # each copy augmented differently; the epoch keeps its N samples (1 = off)
    aug_repeats: int = 1


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
    gamma: float = 0.1  # factor of the step and multistep schedules
    milestones: tuple = (0.5, 0.75)  # multistep: lr x gamma at these fractions of the run
    min_lr_ratio: float = 0.0  # floor of cosine / linear decay, as a fraction of lr
    loss: str = "cross-entropy"  # training loss: cross-entropy, bce (one-vs-all sigmoids) or mse
    # bce: soft targets above this become 1, the rest 0, after mixing and smoothing
    # (timm's target_threshold; RSB: 0.2); 0 = off
    target_threshold: float = 0.0
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
    # keep freed host memory in the process, not unmapped (auto: on CPU; glibc; process-wide)
    keep_freed_memory: str = "auto"
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
    # look for a non-finite loss every N steps, rolling back to the last good state; between
    # checks the flag stays on the device (0 = auto: every step on CPU, where the check is
    # free, every 50 on an accelerator, where it would stall the queue of kernels each step)
    finite_check_every: int = 0
    precise_bn: int = 0  # batches used to recompute BN statistics after training (0 = off)
    sync_bn: bool = False  # data-parallel runs (--nproc): batch norm over the global batch (CUDA)
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
    # the recipe the config was built on ("" = none): a record, as its values are already
    # in the groups above; reading a dict back applies it first, then the dict's values
    recipe: str = ""

    def to_dict(self) -> dict:
        tables = {
            "data": dataclasses.asdict(self.data),
            "model": {"name": self.model.name, **self.model.args},
            "optim": dataclasses.asdict(self.optim),
            "train": dataclasses.asdict(self.train),
        }
        return {RECIPE_KEY: self.recipe, **tables} if self.recipe else tables

    def flat(self) -> dict[str, Any]:
        """Dotted keys to values, e.g. ``{"optim.lr": 0.001, ...}`` (and ``"recipe"``)."""
        out = {RECIPE_KEY: self.recipe} if self.recipe else {}
        out.update({f"{g}.{k}": v for g, d in self.to_dict().items() if isinstance(d, dict)
                    for k, v in d.items()})
        return out

    def set(self, **dotted: Any) -> RunConfig:
        """Return a copy with dotted keys replaced: ``cfg.set(**{"optim.lr": 0.1})``."""
        return apply_overrides(self, dotted)


GROUPS = {"data": DataConfig, "optim": OptimConfig, "train": TrainConfig}
# Keys whose run-to-run change does not alter the result (allowed on resume).
RESUME_SAFE_KEYS = {
    "train.epochs", "train.device", "train.quiet", "train.threads", "train.checkpoint_every",
    "train.finite_check_every", "data.root", "data.eval_batch_size", "train.early_stopping",
    "train.patience", "train.start_from_epoch",
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
        if isinstance(value, bool) and "true" in CHOICES.get(key, ()):
            return str(value).lower()  # --set train.channels_last=false: TOML read a bool
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
        if key == RECIPE_KEY:
            if value != cfg.recipe:  # the same name (a saved config read back) is fine
                raise ConfigError(f"'recipe' is not an override: it goes under every other "
                                  f"key, so name it with --recipe {value} or a top-level "
                                  f"recipe = \"{value}\" in the config file")
            continue
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
        recipe=cfg.recipe,
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
    """Build a config from nested ``{"optim": {"lr": ...}}`` or flat dotted tables; a
    top-level ``recipe = NAME`` is applied to ``base`` first, under the table's keys."""
    table = dict(table)
    cfg = base or RunConfig()
    name = table.pop(RECIPE_KEY, None)
    if name:
        cfg = apply_recipe(cfg, name)
    return apply_overrides(cfg, _flatten(table))


# -- recipes ------------------------------------------------------------------------------

def _recipe_dir():
    """The shipped recipes: ``cnnlab/recipes/*.toml`` (package data, no code)."""
    from importlib import resources

    return resources.files("cnnlab") / "recipes"


def list_recipes() -> dict[str, str]:
    """Recipe name -> its one-line description (from the shipped TOML files)."""
    entries = sorted((e for e in _recipe_dir().iterdir() if e.name.endswith(".toml")),
                     key=lambda e: e.name)
    return {e.name[:-5]: tomllib.loads(e.read_text()).get("description", "")
            for e in entries}


def recipe_table(name_or_path: str | Path, _seen: tuple = ()) -> dict[str, Any]:
    """What a recipe sets, as dotted keys (``{"optim.name": "lamb", ...}``), with the
    recipe it starts from (its own ``recipe = ...``) resolved underneath. A name is a
    shipped recipe; a path ending in ``.toml`` a recipe file of one's own."""
    text = str(name_or_path)
    if text.endswith(".toml"):
        table = read_toml(text, "recipe file")
    else:
        recipes = list_recipes()
        if text not in recipes:
            raise ConfigError(f"unknown recipe {text!r}{did_you_mean(text, recipes, n=2)} "
                              f"(recipes: {', '.join(recipes)}; or give a .toml file)")
        table = tomllib.loads((_recipe_dir() / f"{text}.toml").read_text())
    if text in _seen:
        raise ConfigError(f"recipe {text!r} starts from itself ({' -> '.join(_seen + (text,))})")
    table = {k: v for k, v in table.items() if k != "description"}
    parent = table.pop(RECIPE_KEY, None)
    out = recipe_table(parent, _seen + (text,)) if parent else {}
    out.update(_flatten(table))
    return out


def recipe_name(name_or_path: str | Path) -> str:
    """The name a config records for a recipe: a shipped name, or a file's stem."""
    text = str(name_or_path)
    return Path(text).stem if text.endswith(".toml") else text


def apply_recipe(cfg: RunConfig, name_or_path: str | Path) -> RunConfig:
    """``cfg`` with a recipe's keys set (they replace ``cfg``'s values: apply a recipe
    first, then what should win over it) and the recipe's name recorded."""
    try:
        new = apply_overrides(cfg, recipe_table(name_or_path))
    except ConfigError as e:
        raise ConfigError(f"recipe {recipe_name(name_or_path)!r}: {e}") from None
    return replace(new, recipe=recipe_name(name_or_path))


def recipe_config(name_or_path: str | Path, overrides: list[str] | dict | None = None
                  ) -> RunConfig:
    """The RunConfig of a recipe alone (defaults under it), then ``overrides``."""
    return load_config(recipe=name_or_path, overrides=overrides)


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
    path: str | Path | None = None, overrides: list[str] | dict | None = None,
    recipe: str | Path | None = None,
) -> RunConfig:
    """Load a TOML run file (optional) then apply overrides. ``recipe`` (a name or a
    recipe file) goes under the file's keys, in place of the file's own ``recipe``."""
    table = read_toml(path) if path is not None else {}
    if recipe:
        table[RECIPE_KEY] = str(recipe)
    cfg = from_dict(table)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


CHOICES = {
    "optim.name": ("sgd", "adam", "adamw", "lamb"),
    "optim.decay_mode": ("auto", "coupled", "decoupled"),
    "optim.loss": ("cross-entropy", "bce", "mse"),
    "optim.schedule": (
        "constant", "step", "multistep", "cosine", "onecycle", "warmup-linear",
        "warmup-cosine",
    ),
    "data.pixels": ("keep", "shuffled", "random", "gaussian"),
    "data.label_noise_to": ("other", "any"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.channels_last": ("auto", "true", "false"),
    "train.keep_freed_memory": ("auto", "true", "false"),
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
    if cfg.train.finite_check_every < 0:
        raise ConfigError(f"train.finite_check_every must be >= 0 (0 = auto), got "
                          f"{cfg.train.finite_check_every}")
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
    if cfg.data.aug_repeats < 1:
        raise ConfigError(f"data.aug_repeats must be >= 1 (1 = off), got {cfg.data.aug_repeats}")
    if not 0 <= cfg.optim.target_threshold < 1:
        raise ConfigError(f"optim.target_threshold must be in [0, 1) (0 = off), got "
                          f"{cfg.optim.target_threshold}")
    if any(not 0 < m < 1 for m in cfg.optim.milestones) or \
            list(cfg.optim.milestones) != sorted(cfg.optim.milestones):
        raise ConfigError(f"optim.milestones must be increasing fractions of the run in (0, 1), "
                          f"got {list(cfg.optim.milestones)}")
    if cfg.optim.name == "lamb" and cfg.optim.decay_mode == "coupled":
        raise ConfigError("optim.name = 'lamb' decays in its update (decoupled): "
                          "optim.decay_mode = 'coupled' does not apply")
    if not 0 <= cfg.optim.label_smoothing < 1:
        raise ConfigError(
            f"optim.label_smoothing must be in [0, 1), got {cfg.optim.label_smoothing}"
        )


def config_diff(a: dict, b: dict, ignore: set[str] = frozenset()) -> list[str]:
    """Dotted keys whose values differ between two flat config dicts (JSON-normalised)."""
    norm = lambda d: json.loads(json.dumps(d, default=str))  # noqa: E731 (tuples -> lists)
    a, b = norm(a), norm(b)
    return sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))
