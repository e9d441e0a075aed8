"""The checks to run before a long training run (Karpathy, "A recipe for training neural
networks", 2019): each builds the model and data exactly as ``cnnlab train`` does (same
config, :func:`~cnnlab.train.run.prepare_data`, :func:`~cnnlab.experiments.run.build_model`,
the same :class:`~cnnlab.train.trainer.Trainer` with its loaders and augmentation) and
tests one property of that pipeline.

    results = run_checks(load_config(overrides=["model.width=8"]), out_dir="runs/check")
    [r.status for r in results]     # "PASS", "NOTE" (passed, with a remark) or "FAIL"

    setup = prepare_checks(cfg)     # or one check at a time
    check_overfit_batch(setup).passed

Every check starts from a fresh model built with ``train.seed`` (the weights ``cnnlab
train`` would start from), so each is reproducible and independent of the others. The
checks that train use the config's optimizer and peak lr with a constant schedule (a
warm-up would spend the small budget).

=================  ======================================================================
init-loss          loss at initialization within 0.5 ln C of ln C (C classes); also the
                   loss with the last layer's bias set to the log class prior
logits             the outputs are not probabilities (softmax applied before the loss)
input-baseline     real inputs beat zeroed inputs after a few steps (labels match inputs)
overfit-batch      one small batch is memorized: 100% accuracy and a loss near its floor
batch-gradient     the loss of one sample has no gradient w.r.t. the other samples' inputs
eval-determinism   the evaluation path gives the same logits twice and in other batches,
                   and its loader yields the stored images un-augmented
batch-view         a PNG of the first training batch as the model sees it
=================  ======================================================================
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import __version__
from cnnlab.config import RunConfig
from cnnlab.data.augment.preview import caption
from cnnlab.data.dataset import Dataset, ImageSet
from cnnlab.errors import ConfigError
from cnnlab.experiments.run import build_model
from cnnlab.train.checkpoint import seed_everything
from cnnlab.train.hardware import resolve_channels_last, resolve_device
from cnnlab.train.losses import cross_entropy, hard_labels
from cnnlab.train.run import build_loaders, prepare_data
from cnnlab.train.trainer import Loaders, Trainer
from cnnlab.utils.io import atomic_write, atomic_write_json

CHECKS_FILE = "checks.json"
BATCH_FILE = "batch.png"


@dataclass
class CheckResult:
    """One check's outcome: ``passed``, its numbers, a one-line message and an optional
    remark (``note``) that does not fail it."""

    name: str
    passed: bool
    numbers: dict = field(default_factory=dict)
    message: str = ""
    note: str = ""

    @property
    def status(self) -> str:
        return "FAIL" if not self.passed else "NOTE" if self.note else "PASS"

    def to_dict(self) -> dict:
        return {"status": self.status, **asdict(self)}


@dataclass
class CheckSetup:
    """The data and the way to build a fresh model, loaders and trainer, as ``cnnlab
    train`` builds them."""

    cfg: RunConfig
    ds: Dataset
    stats: tuple[list[float], list[float]]  # the training split's mean and std, in [0, 1]
    device: torch.device
    channels_last: bool

    @property
    def num_classes(self) -> int:
        return self.ds.num_classes

    def loaders(self, ds: Dataset | None = None, **overrides) -> Loaders:
        """The run's loaders (``build_loaders``) over ``ds`` (default: the run's data),
        normalized with the run's training statistics; ``overrides`` are config keys."""
        cfg = self.cfg.set(**overrides) if overrides else self.cfg
        return build_loaders(ds or self.ds, cfg, self.device, self.channels_last,
                             self.stats)[0]

    def trainer(self, **overrides) -> Trainer:
        """A Trainer around a freshly built, freshly seeded model: the weights, loaders
        and optimizer of step 0 of ``cnnlab train`` (``overrides``: config keys)."""
        cfg = self.cfg.set(**overrides) if overrides else self.cfg
        seed_everything(cfg.train.seed)  # as train_run: seed, then build the model
        model = build_model(cfg, self.ds)
        loaders = build_loaders(self.ds, cfg, self.device, self.channels_last, self.stats)[0]
        return Trainer(model, loaders, cfg, num_classes=self.num_classes, progress=False,
                       log=lambda *a: None)

    def training_trainer(self, **overrides) -> Trainer:
        """:meth:`trainer` at the config's optimizer and peak lr, constant schedule."""
        return self.trainer(**{"optim.schedule": "constant", **overrides})


def prepare_checks(cfg: RunConfig) -> CheckSetup:
    """Load the data of ``cfg`` and refuse (TrainingError, one line) what ``cnnlab train``
    would refuse: a model that cannot take the images or has the wrong class count."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    ds = prepare_data(cfg)
    device = resolve_device(cfg.train.device)
    setup = CheckSetup(cfg, ds, ds.train.mean_std(), device,
                       resolve_channels_last(cfg.train.channels_last, device))
    setup.trainer().check_inputs()
    return setup


# ----------------------------------------------------------------------------- helpers

def _batches(loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches epoch after epoch, as the trainer draws them."""
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield from loader


def _loss(t: Trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, K) fp32, the training loss) of the model in its current mode."""
    with t.autocast():
        out = t.model(x).float()
    return out, cross_entropy(out, y, t.config.optim.label_smoothing)


def _eval_split(ds: Dataset) -> tuple[str, ImageSet]:
    """The held-out split the checks evaluate on: val, else test, else train."""
    for name in ("val", "test"):
        split = getattr(ds, name)
        if split is not None and len(split):
            return name, split
    return "train", ds.train


def _eval_logits(t: Trainer, loader) -> tuple[torch.Tensor, dict]:
    """The logits Trainer.evaluate computes over ``loader`` (captured by a forward hook),
    with its metrics; the model starts in train mode, as a training step leaves it."""
    outs: list[torch.Tensor] = []
    hook = t.model.register_forward_hook(lambda m, i, out: outs.append(out.detach().float()))
    t.model.train()
    try:
        metrics = t.evaluate(loader)
    finally:
        hook.remove()
    return torch.cat(outs), metrics


def last_linear(model: nn.Module, num_classes: int) -> nn.Linear | None:
    """The final classifier layer: ``model.fc`` or ``model.head`` when it is an
    ``nn.Linear`` (the zoo's interface), else the last ``nn.Linear`` in module order;
    None unless it has ``num_classes`` outputs and a bias."""
    found = next((m for m in (getattr(model, "fc", None), getattr(model, "head", None))
                  if isinstance(m, nn.Linear)), None)
    if found is None:
        found = next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)),
                     None)
    if found is None or found.out_features != num_classes or found.bias is None:
        return None
    return found


def _tolerance(t: Trainer, fp32: float, low: float) -> float:
    """``fp32`` for fp32 on a CPU, ``low`` under bf16 / fp16 autocast (8 or 11 mantissa
    bits) and on GPUs (whose fp32 convolutions may round inputs to TF32's 10 bits)."""
    return fp32 if t.amp_dtype is None and t.device.type == "cpu" else low


# ------------------------------------------------------------------------------ checks

INIT_BATCHES = 4  # training batches the loss at initialization is averaged over


def check_init_loss(setup: CheckSetup, batches: int = INIT_BATCHES) -> CheckResult:
    """The untrained model's mean training loss against ln C.

    Logits z of order one give a loss near ln C: for small iid logits of std s the
    expected cross-entropy is about ln C + s^2 / 2. The check passes when |loss - ln C|
    <= 0.5 ln C, i.e. logits with std up to about sqrt(ln C) (1.5 for 10 classes). Also
    reports the loss with the last layer's bias set to log p (p: the training split's
    class frequencies), whose gain over the plain init is about ln C - H(p): ~0 on
    balanced data ("init well")."""
    t = setup.trainer()
    c = setup.num_classes
    data = list(itertools.islice(_batches(t.train_loader), batches))  # (x, y) pairs

    def mean_loss() -> tuple[float, float]:
        torch.manual_seed(setup.cfg.train.seed)  # the same dropout masks in both passes
        t.model.train()  # the mode of the first training step
        losses, stds = [], []
        with torch.no_grad():
            for x, y in data:
                out, loss = _loss(t, x, y)
                losses.append(float(loss))
                stds.append(float(out.std(1).mean()))
        return sum(losses) / len(losses), sum(stds) / len(stds)

    loss, logit_std = mean_loss()
    ln_c = math.log(c)
    prior = torch.bincount(setup.ds.train.labels, minlength=c).double()
    prior = (prior / prior.sum()).clamp_min(1e-8)  # (C,)
    entropy = float(-(prior * prior.log()).sum())
    numbers = {"loss": loss, "ln_classes": ln_c, "logit_std": logit_std,
               "prior_entropy": entropy, "loss_prior_bias": None, "prior_bias_gain": None}
    fc = last_linear(t.model, c)
    if fc is not None:
        with torch.no_grad():
            fc.bias.copy_(prior.log().to(fc.bias))
        numbers["loss_prior_bias"] = mean_loss()[0]
        numbers["prior_bias_gain"] = loss - numbers["loss_prior_bias"]
    gain = ("" if fc is None else f"; with the log-prior bias {numbers['loss_prior_bias']:.3f}"
            f" (gain {numbers['prior_bias_gain']:+.3f})")
    passed = abs(loss - ln_c) <= 0.5 * ln_c
    message = f"loss {loss:.3f} vs ln({c}) = {ln_c:.3f}, logit std {logit_std:.2f}{gain}"
    if not passed:
        message += (f": outside ln C +/- {0.5 * ln_c:.2f}; "
                    + ("the initial logits are too large: scale down the last layer's init"
                       if loss > ln_c else "the untrained model already predicts the labels"))
    return CheckResult("init-loss", passed, numbers, message,
                       "" if fc is not None else "no final nn.Linear with a bias: the "
                       "log-prior bias was not tried")


def check_logits(setup: CheckSetup) -> CheckResult:
    """FAIL when every output row is non-negative and sums to one: the model returns
    probabilities, but the loss applies log-softmax itself (softmax before the loss)."""
    t = setup.trainer()
    x, _ = next(iter(t.train_loader))
    t.model.eval()
    with torch.no_grad(), t.autocast():
        out = t.model(x).float()  # (B, K)
    tol = _tolerance(t, 1e-3, 1e-2)  # a bf16 softmax rounds each of K terms
    row_sum_err = float((out.sum(1) - 1).abs().max())
    low = float(out.min())
    probs = low >= -tol and row_sum_err <= tol
    numbers = {"min_output": low, "max_row_sum_error": row_sum_err, "tolerance": tol}
    if probs:
        return CheckResult("logits", False, numbers,
                           "the model's outputs sum to 1: softmax applied before the loss "
                           "(the loss applies log-softmax itself)")
    return CheckResult("logits", True, numbers,
                       f"outputs are logits, not probabilities (min {low:.3g}, row sums "
                       f"off 1 by up to {row_sum_err:.3g})")


BASELINE_STEPS = 100  # optimizer steps of each copy in the input-independent baseline


class _Zeroed:
    """A loader's batches with the inputs zeroed (the labels kept)."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            yield torch.zeros_like(x), y


def check_input_baseline(setup: CheckSetup, steps: int = BASELINE_STEPS) -> CheckResult:
    """Two copies of the fresh model (same seed) take ``steps`` training steps on the same
    batches, one with the inputs zeroed (after normalization: the mean image); both are
    then evaluated on the held-out split, the second with its inputs zeroed too: a model
    of the labels alone, which can learn the class prior and nothing more.

    PASS when the real-input copy's held-out loss is lower by more than 3 standard
    errors of the per-image loss difference (a paired, one-sided z-test at ~0.1%): the
    inputs carry information about the labels and the pipeline lets the model use it.
    Labels shuffled against the inputs leave both copies at the prior's level."""
    split_name, split = _eval_split(setup.ds)
    held = setup.loaders(Dataset(setup.ds.name, setup.ds.train, val=split)).val
    logits, metrics = {}, {}
    for kind in ("real", "zero"):
        t = setup.training_trainer()
        for i, (x, y) in enumerate(itertools.islice(_batches(t.train_loader), steps)):
            if not t.train_step(torch.zeros_like(x) if kind == "zero" else x, y):
                return CheckResult("input-baseline", False, {"diverged_at": i + 1},
                                   f"the loss became non-finite at step {i + 1} with "
                                   f"{kind} inputs; try a lower optim.lr")
        logits[kind], metrics[kind] = _eval_logits(t, held if kind == "real" else _Zeroed(held))
    per_image = {k: F.cross_entropy(v, held.labels, reduction="none") for k, v in logits.items()}
    diff = (per_image["zero"] - per_image["real"]).double()  # (n,) nats gained by the inputs
    n = len(diff)
    gain = float(diff.mean())
    se = float(diff.std() / math.sqrt(n)) if n > 1 else math.inf  # standard error of gain
    passed = gain > 3 * se
    real, zero = metrics["real"], metrics["zero"]
    numbers = {"steps": steps, "split": split_name, "n": n, "real_loss": real["loss"],
               "zero_loss": zero["loss"], "loss_gain": gain, "gain_se": se,
               "real_acc": real["acc"], "zero_acc": zero["acc"]}
    message = (f"{split_name} loss {real['loss']:.3f} with real inputs vs {zero['loss']:.3f} "
               f"zeroed (gain {gain:.3f} +/- {se:.3f}), acc {real['acc']:.3f} vs "
               f"{zero['acc']:.3f} after {steps} steps")
    if not passed:
        message += (": the inputs do not help predict the labels (labels shuffled against "
                    "the inputs?) or the model learns too slowly for the step budget "
                    "(more steps: --steps)")
    return CheckResult("input-baseline", passed, numbers, message)


OVERFIT_SIZE = 16  # images in the one batch to memorize
OVERFIT_STEPS = 300  # step budget
OVERFIT_MARGIN = 0.1  # nats above the loss floor that count as memorized
OVERFIT_EVERY = 5  # steps between the eval-mode measurements of the batch


def check_overfit_batch(setup: CheckSetup, steps: int = OVERFIT_STEPS,
                        size: int = OVERFIT_SIZE, lr: float | None = None) -> CheckResult:
    """Train on one fixed, un-augmented batch of ``size`` training images (``lr``: the
    config's unless given). PASS when, in eval mode, the batch is classified 100%
    correctly with a loss below floor + 0.1 nats within ``steps`` steps, where the floor
    is 0 (or -ln(1 - e + e/C) with label smoothing e: the best a smoothed target allows).
    A model that outputs probabilities cannot get below ~1.46 nats on 10 classes."""
    size = min(size, len(setup.ds.train))
    overrides = {"optim.lr": lr} if lr is not None else {}
    t = setup.training_trainer(**overrides)
    # the batch from an un-augmented loader of the run's data: same order and normalization
    x, y = next(iter(setup.loaders(**{"data.augment": "none", "data.batch_size": size}).train))
    eps, c = t.config.optim.label_smoothing, setup.num_classes
    floor = -math.log(1 - eps + eps / c) if eps else 0.0
    threshold = floor + OVERFIT_MARGIN
    loss = acc = math.nan
    reached = None
    for step in range(1, steps + 1):
        if not t.train_step(x, y):
            return CheckResult("overfit-batch", False, {"diverged_at": step},
                               f"the loss became non-finite at step {step}; try a lower lr")
        if step % OVERFIT_EVERY == 0 or step == steps:
            t.model.eval()
            with torch.no_grad(), t.autocast():
                out = t.model(x).float()
            loss = float(F.cross_entropy(out, y))
            acc = float((out.argmax(1) == y).float().mean())
            if acc == 1.0 and loss < threshold:
                reached = step
                break
    numbers = {"size": size, "steps": steps, "lr": t.config.optim.lr, "reached_at": reached,
               "loss": loss, "acc": acc, "threshold": threshold}
    if reached:
        return CheckResult("overfit-batch", True, numbers,
                           f"{size} images memorized at step {reached}: loss {loss:.4f} < "
                           f"{threshold:.3f}, acc {acc:.0%}")
    return CheckResult("overfit-batch", False, numbers,
                       f"{size} images not memorized in {steps} steps: loss {loss:.3f} "
                       f"(needs < {threshold:.3f}), acc {acc:.0%}; a bug (softmax before "
                       f"the loss, frozen weights, labels not matching) or too low an lr "
                       f"or budget (--overfit-steps)")


def _gradient_mixing(t: Trainer, x: torch.Tensor, y: torch.Tensor, i: int) -> tuple[float, float]:
    """(max |d loss_i / d x_i|, max |d loss_i / d x_j| over j != i) in the model's mode."""
    x = x.detach().clone().requires_grad_(True)
    with t.autocast():
        out = t.model(x)
    loss = cross_entropy(out[i : i + 1].float(), y[i : i + 1])  # sample i's loss only
    (grad,) = torch.autograd.grad(loss, x)  # (B, C, H, W)
    per_sample = grad.abs().flatten(1).amax(1)  # (B,)
    others = torch.cat([per_sample[:i], per_sample[i + 1 :]])
    return float(per_sample[i]), float(others.max())


def _leak(own: float, other: float) -> float:
    """Other samples' largest input gradient relative to the largest of all (0: none)."""
    return other / max(own, other) if max(own, other) > 0 else 0.0


LEAK_TOLERANCE = 1e-6  # independent samples get exactly zero gradient: allow rounding only


def check_batch_gradient(setup: CheckSetup) -> CheckResult:
    """Forward one training batch in train mode and backpropagate sample i's loss to the
    inputs: every other sample's input gradient must be zero (at most 1e-6 of the largest
    input gradient). Batch norm in training mode mixes samples through its batch
    statistics: then the check is repeated with the batch-norm layers in eval mode and
    fails only if samples still mix (a reshape or view across the batch dimension)."""
    t = setup.trainer()
    x, y = next(iter(t.train_loader))
    if len(x) < 2:
        return CheckResult("batch-gradient", True, {"batch": len(x)}, "skipped",
                           "a batch of one image: nothing to mix")
    i = len(x) // 2
    t.model.train()
    own, other = _gradient_mixing(t, x, y, i)
    numbers = {"batch": len(x), "sample": i, "own_grad": own, "other_grad": other,
               "leak": _leak(own, other)}
    if own == other == 0:
        return CheckResult("batch-gradient", False, numbers,
                           f"sample {i}'s loss has no gradient on any input (detached "
                           "inputs or a dead network)")
    note = ""
    if _leak(own, other) > LEAK_TOLERANCE:
        norms = [m for m in t.model.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        if norms:
            note = "batch norm mixes samples in training mode (expected)"
            for m in norms:
                m.eval()
            own, other = _gradient_mixing(t, x, y, i)
            numbers.update(bn_eval_own_grad=own, bn_eval_other_grad=other,
                           bn_eval_leak=_leak(own, other))
    where = " with batch norm in eval mode" if note else ""
    if _leak(own, other) <= LEAK_TOLERANCE:
        return CheckResult("batch-gradient", True, numbers,
                           f"sample {i}'s loss has no gradient on the other {len(x) - 1} "
                           f"inputs{where} (max {other:.2g} vs own {own:.2g})", note)
    return CheckResult("batch-gradient", False, numbers,
                       f"sample {i}'s loss has gradient on other samples' inputs{where} "
                       f"(max {other:.3g} vs own {own:.3g}): the model mixes samples "
                       "across the batch (a reshape or view over the batch dimension?)", note)


EVAL_SAMPLES = 256  # held-out images the determinism check evaluates (at most)
EVAL_WARMUP_STEPS = 20  # training steps before evaluating


def check_eval_determinism(setup: CheckSetup, samples: int = EVAL_SAMPLES) -> CheckResult:
    """Evaluate a fixed set of held-out images with ``Trainer.evaluate`` three times: twice
    as the run's eval loader batches them, once in reverse order in batches a third that
    size, after 20 training steps (so that the logits depend on the input). The logits
    must agree within 1e-4 of their spread over the images (the largest deviation from
    the per-class mean); 3e-2 under bf16 / fp16 autocast or on a GPU, whose kernels may
    round differently by batch shape. Dropout or batch statistics left on (a missing
    model.eval()) or random augmentation at evaluation change them by 0.2 to 1.6 of the
    spread. Also checks that the eval loader yields exactly the stored images,
    normalized (within 1e-5)."""
    t = setup.training_trainer()
    for x, y in itertools.islice(_batches(t.train_loader), EVAL_WARMUP_STEPS):
        if not t.train_step(x, y):  # logits that depend on the input, BN estimates moved
            break  # a non-finite loss changed nothing: evaluate the weights as they are
    split_name, split = _eval_split(setup.ds)
    n = min(samples, len(split))
    index = torch.arange(n)
    fixed, backwards = split.subset(index), split.subset(index.flip(0))
    loader = setup.loaders(Dataset(setup.ds.name, setup.ds.train, val=fixed)).val
    small = max(1, min(setup.cfg.data.eval_batch_size, n) // 3)
    other = setup.loaders(Dataset(setup.ds.name, setup.ds.train, val=backwards),
                          **{"data.eval_batch_size": small}).val
    # what the loader should yield: the stored uint8 images, scaled and normalized
    c = fixed.images.shape[-1]
    want = fixed.images.permute(0, 3, 1, 2).float().div(255).to(setup.device)  # (n, C, H, W)
    if setup.cfg.data.normalize:
        mean, std = (torch.tensor(v, device=setup.device).view(1, c, 1, 1) for v in setup.stats)
        want = (want - mean) / torch.where(std > 0, std, torch.ones_like(std))
    got = torch.cat([x for x, _ in loader])
    loader_err = float((got - want).abs().max()) if got.shape == want.shape else math.inf
    first, m1 = _eval_logits(t, loader)
    again, m2 = _eval_logits(t, loader)
    mixed, m3 = _eval_logits(t, other)
    mixed = mixed.flip(0)  # back to the stored order
    # relative to how much the logits vary from image to image (their input-dependent part)
    spread = float((first - first.mean(0)).abs().max())
    scale = max(spread, 1e-3 * float(first.abs().max()), 1e-6)
    repeat_err = float((first - again).abs().max()) / scale
    batch_err = float((first - mixed).abs().max()) / scale
    tol = _tolerance(t, 1e-4, 3e-2)
    numbers = {"split": split_name, "n": n, "eval_batch_size": setup.cfg.data.eval_batch_size,
               "other_batch_size": small, "loader_max_error": loader_err,
               "repeat_rel_diff": repeat_err, "batch_rel_diff": batch_err, "tolerance": tol,
               "losses": [m1["loss"], m2["loss"], m3["loss"]],
               "accs": [m1["acc"], m2["acc"], m3["acc"]]}
    problems = []
    if not loader_err <= 1e-5:  # NaN fails too
        problems.append(f"the eval loader changes the stored images (max |diff| "
                        f"{loader_err:.3g}): augmentation applied at evaluation?")
    if not repeat_err <= tol:
        problems.append(f"two passes differ (rel. {repeat_err:.3g}): randomness at "
                        "evaluation (dropout left on, a missing model.eval(), or eval "
                        "augmentation)")
    if not batch_err <= tol:
        problems.append(f"other batches change the logits (rel. {batch_err:.3g}): batch "
                        "statistics at evaluation (a missing model.eval()?)")
    if problems:
        return CheckResult("eval-determinism", False, numbers, "; ".join(problems))
    return CheckResult("eval-determinism", True, numbers,
                       f"{n} {split_name} images: same logits twice (rel. {repeat_err:.2g}) "
                       f"and in batches of {small} reversed (rel. {batch_err:.2g}, tol "
                       f"{tol:g}); the loader yields the stored images")


MAX_TILES = 64  # images shown of the first training batch


def check_batch_view(setup: CheckSetup, out_dir: str | Path) -> CheckResult:
    """Write ``OUT/batch.png``: the first training batch exactly as the trainer's loader
    yields it (augmented, normalized), de-normalized for display, each tile captioned
    with its class (or its mixed soft label). Passes when written: the eye is the check."""
    t = setup.trainer()
    loader = t.train_loader
    x, y = next(iter(loader))  # (B, C, H, W) normalized; (B,) or soft (B, K)
    numbers = {"batch": list(x.shape), "pixel_mean": float(x.mean()),
               "pixel_std": float(x.std())}
    if loader.mean is not None:
        x = x * loader.std + loader.mean
    path = Path(out_dir) / BATCH_FILE
    k = min(len(x), MAX_TILES)
    captions = [caption(y[j].cpu(), loader.classes) for j in range(k)]
    augment = setup.cfg.data.augment
    augment = augment if isinstance(augment, str) else "custom pipeline"
    title = (f"{setup.cfg.data.spec}: training batch 1 as the model sees it (augment "
             f"{augment}, {'normalized' if loader.mean is not None else 'raw'}; shown "
             "de-normalized)")
    _tile_grid(x[:k].clamp(0, 1).float().cpu(), captions, path, title)
    numbers["path"] = str(path)
    counts = torch.bincount(hard_labels(y).cpu(), minlength=setup.num_classes).tolist()
    numbers["label_counts"] = counts
    return CheckResult("batch-view", True, numbers,
                       f"wrote {path} ({k} of {len(x)} images; mean {numbers['pixel_mean']:.2f}"
                       f", std {numbers['pixel_std']:.2f} after normalization)")


def _tile_grid(x: torch.Tensor, captions: list[str], path: Path, title: str) -> Path:
    """A PNG grid of (N, C, H, W) images in [0, 1] with a caption above each, drawn as one
    image (matplotlib, no display needed; one imshow is fast), written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n, c, h, w = x.shape
    cols = min(n, 8)
    rows = -(-n // cols)
    pad, top = max(1, h // 16), max(4, h // 3)  # pixels between tiles, room for captions
    grid = torch.ones(rows * (h + top), cols * (w + pad), c)  # white background
    for j in range(n):
        r, k = divmod(j, cols)
        y0, x0 = r * (h + top) + top, k * (w + pad)
        grid[y0 : y0 + h, x0 : x0 + w] = x[j].permute(1, 2, 0)  # (H, W, C)
    fig = Figure(figsize=(cols * 1.1, rows * 1.3 + 0.4))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 0.94))
    img = grid.numpy()
    ax.imshow(img[:, :, 0] if c == 1 else img, cmap="gray" if c == 1 else None, vmin=0,
              vmax=1, interpolation="nearest")
    for j, text in enumerate(captions):
        r, k = divmod(j, cols)
        ax.text(k * (w + pad) + w / 2, r * (h + top) + top - 1, text, ha="center",
                va="bottom", fontsize=7, linespacing=0.9)
    ax.set_axis_off()
    fig.suptitle(title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


# ----------------------------------------------------------------------------- runner

CHECKS: dict[str, Callable[..., CheckResult]] = {
    "init-loss": check_init_loss,
    "logits": check_logits,
    "input-baseline": check_input_baseline,
    "overfit-batch": check_overfit_batch,
    "batch-gradient": check_batch_gradient,
    "eval-determinism": check_eval_determinism,
    "batch-view": check_batch_view,
}


def run_checks(cfg: RunConfig, out_dir: str | Path | None = None, *,
               steps: int = BASELINE_STEPS, overfit_steps: int = OVERFIT_STEPS,
               only: list[str] | None = None,
               log: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Run the checks (``only``: a subset by name) on the model and data of ``cfg``;
    ``log`` is called with each result as it comes. With ``out_dir`` the batch PNG and
    ``checks.json`` (the config and every check's numbers) are written there; without it
    the batch-view check is left out."""
    names = list(only or CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check {unknown[0]!r}; choose from {', '.join(CHECKS)}")
    if out_dir is None:
        names = [n for n in names if n != "batch-view"]
    if steps < 1 or overfit_steps < 1:
        raise ConfigError(f"check step budgets must be >= 1, got {steps} and {overfit_steps}")
    setup = prepare_checks(cfg)
    kwargs = {"input-baseline": {"steps": steps}, "overfit-batch": {"steps": overfit_steps},
              "batch-view": {"out_dir": out_dir}}
    results = []
    t0 = time.perf_counter()
    for name in names:
        start = time.perf_counter()
        result = CHECKS[name](setup, **kwargs.get(name, {}))
        result.numbers["seconds"] = round(time.perf_counter() - start, 3)
        results.append(result)
        if log:
            log(result)
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / CHECKS_FILE, {
            "passed": all(r.passed for r in results),
            "model": cfg.model.name, "data": cfg.data.spec, "seed": cfg.train.seed,
            "seconds": round(time.perf_counter() - t0, 3),
            "checks": [r.to_dict() for r in results], "config": cfg.to_dict(),
            "versions": {"cnnlab": __version__, "torch": torch.__version__}})
    return results


__all__ = ["CHECKS", "CheckResult", "CheckSetup", "check_batch_gradient", "check_batch_view",
           "check_eval_determinism", "check_init_loss", "check_input_baseline", "check_logits",
           "check_overfit_batch", "last_linear", "prepare_checks", "run_checks"]
