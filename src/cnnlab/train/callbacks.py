"""Callbacks: small hooks into the training loop, each with state that checkpoints keep.

Hooks receive the Trainer; ``trainer.stop_training = True`` ends the run after the epoch.
The loop itself knows only the step: penalties added to the loss, the proximal L1 step,
precise batch-norm statistics and the sparsity report are callbacks here, which
:func:`callbacks_from_config` builds from a run's config (the Trainer adds them).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from pathlib import Path

import torch

from cnnlab.config import RunConfig
from cnnlab.errors import TrainingError
from cnnlab.status import DIVERGED
from cnnlab.train.precise_bn import precise_bn
from cnnlab.train.regularizers import format_sparsity, penalty, proximal_l1_, sparsity_report
from cnnlab.utils.io import atomic_write_text
from cnnlab.utils.progress import progress_enabled


class Callback:
    """The hooks, in the order a run calls them (each a no-op here):

    - ``on_train_begin(trainer)``: before the first epoch (also on resume);
    - ``on_epoch_begin(trainer, epoch)``;
    - ``on_batch_begin(trainer, step)``: before each optimizer step;
    - ``on_loss(trainer, loss) -> loss``: in each step, with the loss of the batch; returns
      the loss to minimize (add a penalty here). Runs before the finiteness check and the
      backward pass;
    - ``on_after_step(trainer)``: after the optimizer step, before the schedule's step (a
      proximal step on the weights goes here);
    - ``on_batch_end(trainer, step, loss)``: after the step, ``step`` counted from 1;
    - ``on_epoch_end(trainer, epoch, metrics)``: the epoch's metrics, after validation;
    - ``on_train_end(trainer)``: after the last epoch (early stopping restores weights);
    - ``on_fit_end(trainer, status)``: after every ``on_train_end``, with the final weights,
      before test evaluation (recompute statistics here);
    - ``on_summary(trainer, summary)``: the run's summary dict, before ``summary.json`` is
      written (add keys, write reports).

    ``state_dict`` / ``load_state_dict`` carry the callback's state in checkpoints.
    """

    def on_train_begin(self, trainer) -> None: ...
    def on_epoch_begin(self, trainer, epoch: int) -> None: ...
    def on_batch_begin(self, trainer, step: int) -> None: ...

    def on_loss(self, trainer, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def on_after_step(self, trainer) -> None: ...
    def on_batch_end(self, trainer, step: int, loss: float | None) -> None: ...
    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None: ...
    def on_train_end(self, trainer) -> None: ...
    def on_fit_end(self, trainer, status: str) -> None: ...
    def on_summary(self, trainer, summary: dict) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


def _mode_for(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "min" if "loss" in monitor else "max"


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best`` the model ends with the weights of the best epoch.
    Epochs before ``start_from_epoch`` (0-based) count for the best but never for the
    patience: a small training set whose first epochs are a handful of steps at chance is
    not stopped before it learns."""

    def __init__(self, monitor: str = "val_acc", mode: str = "auto", patience: int = 5,
                 min_delta: float = 0.0, restore_best: bool = True, start_from_epoch: int = 0):
        self.monitor, self.mode = monitor, _mode_for(monitor, mode)
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.start_from_epoch = start_from_epoch
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.wait, self.stopped_epoch = -1, 0, None
        self.best_weights: dict | None = None

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer, epoch, metrics):
        value = metrics.get(self.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_weights = {k: v.detach().clone()
                                     for k, v in trainer.model.state_dict().items()}
        elif epoch >= self.start_from_epoch:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore_best and self.best_weights is not None and self.stopped_epoch is not None:
            trainer.model.load_state_dict(self.best_weights)
            trainer.log(f"early stopping at epoch {self.stopped_epoch + 1}; restored the "
                        f"weights of epoch {self.best_epoch + 1} ({self.monitor}={self.best:.4f})")

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.stopped_epoch, self.best_weights = state["stopped_epoch"], state["best_weights"]


class TargetTrainAccuracy(Callback):
    """Stop at the end of the first epoch whose training accuracy (the running mean over
    its batches) reaches ``target``: "trained until it fits" (``train.target_train_acc``).
    Stateless: the epoch it stopped at is in the history."""

    def __init__(self, target: float):
        self.target = target

    def on_epoch_end(self, trainer, epoch, metrics):
        if metrics["train_acc"] >= self.target:
            trainer.stop_training = True
            trainer.log(f"training accuracy {metrics['train_acc']:.4f} reached the target "
                        f"{self.target:g} at epoch {epoch + 1}, step {trainer.step}: stopping")


class Checkpoint(Callback):
    """Write ``last.pt`` at every epoch end (and every ``every_steps`` optimizer steps) and
    ``best.pt`` when ``monitor`` improves. Writes are atomic; see train/checkpoint.py."""

    def __init__(self, folder: str | Path, monitor: str = "val_acc", mode: str = "auto",
                 every_steps: int = 0):
        self.folder = Path(folder)
        self.monitor, self.mode = monitor, _mode_for(monitor, mode)
        self.every_steps = every_steps
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_batch_end(self, trainer, step, loss):
        if self.every_steps and step % self.every_steps == 0 and not trainer.epoch_done:
            trainer.save(self.folder / "last.pt")

    def on_epoch_end(self, trainer, epoch, metrics):
        value = metrics.get(self.monitor)
        if value is not None and not math.isnan(value) and (
            value < self.best if self.mode == "min" else value > self.best
        ):
            self.best = value
            trainer.save(self.folder / "best.pt", weights_only_state=True, keep_previous=False)
        trainer.save(self.folder / "last.pt")

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state["best"]


class CSVLogger(Callback):
    """Per-epoch metrics to ``metrics.csv`` as they happen (rewritten from the history on
    resume, so a crash never leaves a duplicate or a half row)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _write_all(self, history: list[dict]) -> None:
        if not history:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.path, buf.getvalue())

    def on_train_begin(self, trainer):
        self._write_all(trainer.history)

    def on_epoch_end(self, trainer, epoch, metrics):
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(metrics))
            if new:
                writer.writeheader()
            writer.writerow(metrics)
            f.flush()
            os.fsync(f.fileno())


class ProgressBar(Callback):
    """A tqdm bar per epoch with live loss and accuracy; silent when stderr is not a
    terminal or when disabled."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = progress_enabled(enabled)
        self.bar = None

    def on_epoch_begin(self, trainer, epoch):
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.steps_per_epoch, initial=trainer.train_loader.batch,
                        desc=f"epoch {epoch + 1}/{trainer.epochs}", leave=True,
                        dynamic_ncols=True, file=sys.stderr)

    def on_batch_end(self, trainer, step, loss):
        if self.bar is None:
            return
        self.bar.update(1)
        if step % 10 == 0 or trainer.train_loader.batch == trainer.steps_per_epoch:
            loss, acc = trainer.running_metrics()
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", refresh=False)

    def on_epoch_end(self, trainer, epoch, metrics):
        if self.bar is None:
            return
        post = {k: f"{metrics[k]:.3f}" for k in ("train_loss", "train_acc", "val_acc")
                if isinstance(metrics.get(k), float) and not math.isnan(metrics[k])}
        self.bar.set_postfix(post)
        self.bar.close()
        self.bar = None


# -- regularization and statistics, added from the config ---------------------------------

class Penalty(Callback):
    """Add ``penalty(model, l1, l2, group_lasso)`` (see train/regularizers.py) to every
    step's loss, computed on the weights the step starts from."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0, group_lasso: float = 0.0):
        self.l1, self.l2, self.group_lasso = l1, l2, group_lasso

    def on_loss(self, trainer, loss):
        return loss + penalty(trainer.model, l1=self.l1, l2=self.l2,
                              group_lasso=self.group_lasso)


class ProximalL1(Callback):
    """Soft-threshold the weights by ``lr * l1`` after every optimizer step (ISTA), with
    the learning rate of the step just taken (first parameter group)."""

    def __init__(self, l1: float):
        self.l1 = l1

    def on_after_step(self, trainer):
        proximal_l1_(trainer.model, trainer.optimizer.param_groups[0]["lr"], self.l1)


class PreciseBN(Callback):
    """Recompute batch-norm statistics over ``num_batches`` of the un-augmented training
    split (``trainer.loaders.train_eval``) before test evaluation; not after divergence."""

    def __init__(self, num_batches: int):
        self.num_batches = num_batches

    def on_fit_end(self, trainer, status):
        if status != DIVERGED and trainer.loaders.train_eval is not None:
            precise_bn(trainer.model, trainer.loaders.train_eval, num_batches=self.num_batches)


class SparsityReport(Callback):
    """Put the fraction of (near-)zero weights and units into the summary (``sparsity``)
    and write the per-layer table to ``sparsity.txt`` in the run folder."""

    def on_summary(self, trainer, summary):
        report = sparsity_report(trainer.model)
        summary["sparsity"] = report["total"]
        if trainer.out_dir is not None:
            atomic_write_text(trainer.out_dir / "sparsity.txt", format_sparsity(report) + "\n")


class DataInit(Callback):
    """Initialize a model from its training data before the first step, for models that
    define ``init_from_data(images)`` (e.g. a patch-whitening first layer): it gets the first
    ``num_images`` training images as the model sees them (float, normalized, (N, C, H, W),
    not augmented). Then the parameters its ``whitening_biases()`` lists (the whitening
    layer's bias) train for ``bias_epochs`` epochs and are frozen after (0 = never
    frozen). Not re-run on resume: the checkpoint holds the fitted weights."""

    def __init__(self, num_images: int = 5000, bias_epochs: int = 0):
        self.num_images, self.bias_epochs = num_images, bias_epochs

    def on_train_begin(self, trainer):
        init = getattr(trainer.model, "init_from_data", None)
        if init is None or trainer.step > 0:
            return
        ld = trainer.train_loader
        g = torch.Generator().manual_seed(trainer.config.train.seed)
        idx = torch.randperm(len(ld.images), generator=g)[:self.num_images].to(ld.device)
        x = ld.normalize(ld.to_float(ld.images.index_select(0, idx)))  # (N, C, H, W)
        init(x.contiguous())

    def on_epoch_begin(self, trainer, epoch):
        if not self.bias_epochs:
            return
        for p in getattr(trainer.model, "whitening_biases", list)():
            p.requires_grad_(epoch < self.bias_epochs)  # no gradient: the optimizer skips it


class WeightAveraging(Callback):
    """An exponential moving average of the weights (and float buffers: BN statistics),
    updated every ``every`` optimizer steps with

        decay_t = decay ** every * (t / T) ** warmup       (t: steps done, T: total steps)
        avg     = decay_t * avg + (1 - decay_t) * w

    (``warmup`` 0: a constant decay; the record's lookahead uses decay 0.95, every 5,
    warmup 3, so the average follows the weights closely early and lags them late).

    ``mode="ema"``: the average is kept beside the weights; at the end of training the
    model takes the averaged weights, so the test evaluation, ``summary.json`` and the
    final checkpoint (``checkpoints/average.pt``) are the average's; the per-epoch
    validation sees the raw weights. ``mode="lookahead"``: after each update the weights
    are set to the average (Zhang et al. 2019; the record recipe). The average is part of
    the callback's state, so a resumed run continues it exactly."""

    def __init__(self, mode: str = "ema", decay: float = 0.999, every: int = 1,
                 warmup: float = 0.0):
        if mode not in ("ema", "lookahead"):
            raise TrainingError(f"weight averaging mode must be ema or lookahead, got {mode!r}")
        self.mode, self.decay, self.every, self.warmup = mode, decay, every, warmup
        self.average: dict[str, torch.Tensor] | None = None

    def _tensors(self, trainer) -> dict[str, torch.Tensor]:
        return {k: v for k, v in trainer.model.state_dict().items() if v.is_floating_point()}

    def decay_at(self, step: int, total: int) -> float:
        """The decay of the update after ``step`` optimizer steps of ``total``."""
        ramp = (step / max(total, 1)) ** self.warmup if self.warmup else 1.0
        return self.decay ** self.every * ramp

    def on_train_begin(self, trainer):
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in self._tensors(trainer).items()}

    @torch.no_grad()
    def update(self, trainer, decay: float) -> None:
        for k, w in self._tensors(trainer).items():
            avg = self.average[k]
            avg.lerp_(w.detach(), 1 - decay)  # avg = decay avg + (1 - decay) w
            if self.mode == "lookahead":
                w.copy_(avg)

    def on_batch_end(self, trainer, step, loss):
        if step % self.every == 0:
            self.update(trainer, self.decay_at(step, trainer.epochs * trainer.steps_per_epoch))

    @torch.no_grad()
    def on_train_end(self, trainer):
        for k, w in self._tensors(trainer).items():  # the model ends as the average
            w.copy_(self.average[k])
        if trainer.out_dir is not None and trainer.config.train.checkpoint:
            trainer.save(trainer.out_dir / "checkpoints" / "average.pt",
                         weights_only_state=True, keep_previous=False)

    def state_dict(self):
        return {"average": self.average}

    def load_state_dict(self, state):
        self.average = state["average"]


def callbacks_from_config(config: RunConfig) -> list[Callback]:
    """The callbacks that ``optim.l1 / l2 / group_lasso / proximal_l1``,
    ``train.precise_bn`` and ``train.average`` ask for (none when they are off; the
    Trainer adds :class:`DataInit` for models with ``init_from_data``)."""
    o, t = config.optim, config.train
    cbs: list[Callback] = []
    if t.average != "none":
        cbs.append(WeightAveraging(t.average, t.ema_decay, t.ema_every, t.ema_warmup))
    l1 = 0.0 if o.proximal_l1 else o.l1  # proximal: l1 as a step, not as a loss term
    if l1 or o.l2 or o.group_lasso:
        cbs.append(Penalty(l1=l1, l2=o.l2, group_lasso=o.group_lasso))
    if o.proximal_l1 and o.l1:
        cbs.append(ProximalL1(o.l1))
    if t.precise_bn:
        cbs.append(PreciseBN(t.precise_bn))
    if o.l1 or o.group_lasso:  # the sparsity the penalties produced
        cbs.append(SparsityReport())
    return cbs


class TensorBoardLogger(Callback):
    """Per-epoch metrics (losses, accuracies, the learning rate ``lr``, speed) as TensorBoard
    scalars in ``log_dir``, one point per epoch: ``tensorboard --logdir RUN_DIR/tensorboard``.
    Asked for by ``train.tensorboard = true``; needs the optional ``tensorboard`` package."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrainingError('train.tensorboard needs the tensorboard package: '
                                'pip install "cnnlab[tensorboard]"') from None
        self.log_dir = Path(log_dir)
        self._writer_type = SummaryWriter
        self.writer = None

    def on_train_begin(self, trainer):
        if self.writer is None:
            self.writer = self._writer_type(str(self.log_dir))

    def on_epoch_end(self, trainer, epoch, metrics):
        epoch = int(metrics.get("epoch", epoch + 1))  # counted from 1, as in metrics.csv
        for key, value in metrics.items():
            if key not in ("epoch", "step") and isinstance(value, int | float) \
                    and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=epoch)
        self.writer.flush()

    def on_fit_end(self, trainer, status):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
