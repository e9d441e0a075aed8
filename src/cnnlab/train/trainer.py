"""The training loop for any ``nn.Module`` over on-device loaders.

    trainer = Trainer(model, loaders, config, out_dir="runs/x")
    result = trainer.fit()          # RunResult(status, history, summary, ...)

Per step: forward under autocast (bf16 where the hardware computes it natively), loss in
fp32, the callbacks' loss terms, backward (through the fp16 gradient scaler, a pass-through
otherwise), optional clipping, optimizer step, the callbacks' after-step hook and the
per-batch schedule step.  A non-finite loss ends the run with status ``diverged`` and the
weights of before the bad update: on CPU the loss is checked before each update; on an
accelerator a flag stays on the device and is read every ``train.finite_check_every``
steps (no host-device synchronization per step), and a bad window rolls back to the state
kept at the last good check.  So does an epoch whose mean training loss is finite but above
:func:`cnnlab.status.divergence_bound` (``max(1000 x ln(num_classes), 10 x the first
batch's loss)``: an exploded run, which no healthy one reaches).  The summary's ``status``
is :func:`cnnlab.status.run_status` (``stuck`` for a final accuracy at chance) and its
``best_*`` fields are those of the best epoch by ``train.monitor``, the epoch early
stopping restores.  Regularizers and post-training statistics are callbacks
(train/callbacks.py); the loop knows the step and nothing else.

In a torch.distributed process group (``cnnlab train --nproc N``, torchrun) the model
steps through DistributedDataParallel, the loaders read this rank's slices, the epoch's
sums and every evaluation are summed over the ranks, and rank 0 alone writes files; a
checkpoint holds each rank's loader position, random streams and running sums, so a
resumed run continues exactly (see :mod:`cnnlab.train.distributed`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import __version__
from cnnlab.config import RunConfig
from cnnlab.data.loader import DeviceLoader, epoch_seed
from cnnlab.errors import TrainingError
from cnnlab.status import DIVERGED, OK, STOPPED, divergence_bound, is_diverged, run_status
from cnnlab.train import distributed
from cnnlab.train.callbacks import (
    Callback,
    Checkpoint,
    CSVLogger,
    DataInit,
    EarlyStopping,
    ProgressBar,
    TargetTrainAccuracy,
    TensorBoardLogger,
    _mode_for,
    callbacks_from_config,
)
from cnnlab.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from cnnlab.train.finetune import freeze_backbone
from cnnlab.train.hardware import (
    resolve_channels_last,
    resolve_device,
    resolve_finite_check_every,
    resolve_keep_freed_memory,
    resolve_precision,
)
from cnnlab.train.losses import classification_loss, hard_labels
from cnnlab.train.optim import build_optimizer, build_scheduler, freeze_norm_scales
from cnnlab.utils.io import atomic_write_json
from cnnlab.utils.params import count_params


@dataclass
class Loaders:
    train: DeviceLoader
    val: DeviceLoader | None = None
    test: DeviceLoader | None = None
    train_eval: DeviceLoader | None = None  # train split without augmentation (precise BN)


@dataclass
class RunResult:
    status: str  # one of cnnlab.status.TRAINER_STATUSES: ok | stopped | diverged
    history: list[dict]
    summary: dict
    model: nn.Module
    run_dir: Path | None = None
    message: str = ""


@dataclass
class EpochSums:
    """Running sums over the current epoch's training batches, kept on the device (no sync
    per step): loss x examples, correct predictions, examples, seconds spent stepping."""

    loss: torch.Tensor  # float64 0-d
    correct: torch.Tensor  # int64 0-d
    count: int = 0
    time: float = 0.0  # s

    @classmethod
    def zeros(cls, device: torch.device) -> EpochSums:
        return cls(torch.zeros((), dtype=torch.float64, device=device),
                   torch.zeros((), dtype=torch.int64, device=device))

    def state_dict(self) -> dict:
        return {"loss": self.loss.cpu(), "correct": self.correct.cpu(), "count": self.count,
                "time": self.time}

    @classmethod
    def from_state(cls, state: dict, device: torch.device) -> EpochSums:
        return cls(state["loss"].to(device), state["correct"].to(device), state["count"],
                   state["time"])


def first_conv_in_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        loaders: Loaders,
        config: RunConfig,
        out_dir: str | Path | None = None,
        callbacks: list[Callback] | None = None,
        num_classes: int | None = None,
        progress: bool | None = None,
        log=print,
    ):
        self.config = config
        self.world = distributed.world()
        self.device = distributed.rank_device(resolve_device(config.train.device), self.world)
        self.amp_dtype = resolve_precision(config.train.precision, self.device)
        self.channels_last = resolve_channels_last(config.train.channels_last, self.device)
        self.kept_freed_memory = resolve_keep_freed_memory(config.train.keep_freed_memory,
                                                           self.device)
        if self.world.grouped and config.train.whiten_bias_epochs \
                and hasattr(model, "whitening_biases"):
            raise TrainingError("train.whiten_bias_epochs freezes parameters during the run, "
                                "which DistributedDataParallel cannot follow; set it to 0 or "
                                "train on one process")
        if self.world.grouped and self.world.size > 1 and config.train.sync_bn:
            model = distributed.convert_sync_bn(model, self.device)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = self.model
        if self.world.grouped:  # gradients averaged over the ranks in the backward pass
            self.step_model = distributed.data_parallel(self.model, self.device)
            if self.world.rank > 0:  # its own dropout masks (rank 0: a single run's)
                torch.manual_seed(epoch_seed(config.train.seed, 0, stream=100 + self.world.rank))
        if config.train.compile:
            self.step_model = torch.compile(self.step_model)
        self.loaders = loaders
        self.train_loader = loaders.train
        self.num_classes = num_classes or len(loaders.train.classes)
        self.epochs = config.train.epochs
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise TrainingError(
                f"data.batch_size = {self.train_loader.global_batch_size} is larger than the "
                f"{len(self.train_loader.images)} training images (with drop_last)"
            )
        if config.optim.freeze_norm_scale:
            freeze_norm_scales(self.model)  # before the optimizer collects what trains
        if config.train.freeze == "backbone":
            freeze_backbone(self.model)  # likewise
        self.optimizer = build_optimizer(self.model, config.optim,
                                         batch_size=self.train_loader.global_batch_size)
        self.peak_lr = self.optimizer.param_groups[0]["lr"]  # per step, for the global batch
        self.scheduler = build_scheduler(self.optimizer, config.optim,
                                         self.epochs * self.steps_per_epoch, self.steps_per_epoch)
        # loss scaling for fp16 only; disabled it passes everything through unchanged
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=(self.amp_dtype == torch.float16))
        self.checkpoint_dir = Path(out_dir) / "checkpoints" if out_dir else None
        self.out_dir = Path(out_dir) if out_dir and self.world.is_main else None  # the writer
        self.log = log if self.world.is_main else (lambda *a, **k: None)
        self.epoch, self.step = 0, 0
        self.history: list[dict] = []
        self.initial_loss: float | None = None  # the first batch's loss, before any update
        self._inputs_checked = False
        self.stop_training = False
        self.epoch_done = True
        self._epoch_t0 = time.perf_counter()
        self.running = EpochSums.zeros(self.device)
        self.callbacks = self._default_callbacks(progress, list(callbacks or []))
        # deferred non-finite check (every > 1): a device flag and the state of the last check
        self.finite_every = resolve_finite_check_every(config.train.finite_check_every,
                                                       self.device)
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self._good_state: dict | None = None

    # ----------------------------------------------------------------- set-up
    def _default_callbacks(self, progress: bool | None, user: list[Callback]) -> list[Callback]:
        """Early stopping, the user's callbacks and those the config asks for (penalties,
        precise BN, sparsity: :func:`callbacks_from_config`) first, so that the checkpoint
        written at an epoch's end holds their state after that epoch; then checkpoint, log,
        progress."""
        t = self.config.train
        cbs: list[Callback] = []
        if hasattr(self.model, "init_from_data"):  # fitted to the data before the first step
            cbs.append(DataInit(t.data_init_images, t.whiten_bias_epochs))
        if t.early_stopping:
            cbs.append(EarlyStopping(t.monitor, patience=t.patience, min_delta=t.min_delta,
                                     restore_best=t.restore_best,
                                     start_from_epoch=t.start_from_epoch))
        if t.target_train_acc:
            cbs.append(TargetTrainAccuracy(t.target_train_acc))
        cbs += user
        cbs += callbacks_from_config(self.config)
        if self.checkpoint_dir is not None and t.checkpoint:
            # on every rank: a save gathers each rank's state (rank 0 writes it)
            cbs.append(Checkpoint(self.checkpoint_dir, t.monitor,
                                  every_steps=t.checkpoint_every))
        if self.out_dir is not None:
            cbs.append(CSVLogger(self.out_dir / "metrics.csv"))
            if t.tensorboard:
                cbs.append(TensorBoardLogger(self.out_dir / "tensorboard"))
        quiet = t.quiet or not self.world.is_main
        cbs.append(ProgressBar(enabled=False if quiet else progress))
        return cbs

    def check_inputs(self) -> None:
        """Fail fast, before any step, on data the model cannot learn from (once)."""
        if self._inputs_checked:
            return
        loader = self.train_loader
        h, w, c = loader.images.shape[1:]
        model_c = first_conv_in_channels(self.model)
        if model_c is not None and model_c != c:
            raise TrainingError(
                f"the model's first convolution takes {model_c} input channels but the images "
                f"have {c}; build the model with in_chans={c}"
            )
        for name, ld in (("train", loader), ("val", self.loaders.val), ("test", self.loaders.test)):
            if ld is None or len(ld.labels) == 0:
                continue
            lo, hi = int(ld.labels.min()), int(ld.labels.max())
            if lo < 0 or hi >= self.num_classes:
                raise TrainingError(
                    f"{name} labels must lie in [0, {self.num_classes}), found {lo}..{hi}"
                )
        was_training = self.model.training
        self.model.eval()
        x = loader.normalize(loader.to_float(loader.images[:1]))
        try:
            with torch.no_grad(), self.autocast():
                out = self.model(x)
        except RuntimeError as e:
            raise TrainingError(f"the model cannot take {h}x{w}x{c} images: "
                                f"{str(e).splitlines()[0]}") from None
        finally:
            self.model.train(was_training)
        if out.ndim != 2 or out.shape[1] != self.num_classes:
            raise TrainingError(
                f"the model outputs {tuple(out.shape[1:])} per image but the dataset has "
                f"{self.num_classes} classes; build it with num_classes={self.num_classes}"
            )
        self._inputs_checked = True

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ steps
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """One optimizer step; returns False (and changes nothing) on a non-finite loss."""
        o = self.config.optim
        self.model.train()
        with self.autocast():
            out = self.step_model(x)
        loss = classification_loss(o.loss, out, y, o.label_smoothing,
                                   target_threshold=o.target_threshold)
        total = loss
        for cb in self.callbacks:
            total = cb.on_loss(self, total)  # penalties: terms on the current weights
        if self.initial_loss is None:  # one sync, on the first step only
            self.initial_loss = distributed.mean_over_ranks(loss)
        if self.finite_every == 1:
            if not distributed.all_finite(total):  # the same verdict on every rank
                return False
        else:  # recorded on the device, read by _finite_since_check
            self._nonfinite |= ~torch.isfinite(total.detach())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients
        if o.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        for cb in self.callbacks:
            cb.on_after_step(self)  # e.g. the proximal L1 step, at this step's lr
        self.scheduler.step()
        n = len(x)
        self.running.loss += loss.detach().double() * n  # the data loss, without penalties
        self.running.correct += (out.argmax(1) == hard_labels(y)).sum()
        self.running.count += n
        return True

    def running_metrics(self) -> tuple[float, float]:
        """Mean training loss and accuracy of the current epoch so far on this rank (syncs
        the device)."""
        n = max(self.running.count, 1)
        return float(self.running.loss) / n, float(self.running.correct) / n

    @torch.no_grad()
    def evaluate(self, loader: DeviceLoader, tta: str = "none") -> dict:
        """Loss, accuracy and per-class accuracy over a loader in eval mode, optionally with
        test-time augmentation (logits averaged over flipped / one-pixel-translated views).
        In a process group each rank evaluates its slices and the sums are added up.

        ``per_class`` lists each class's accuracy (None for a class absent from the split);
        with TTA, ``acc_no_tta`` is the accuracy of the plain view from the same pass."""
        self.model.eval()
        distributed.sync_buffers(self.model)  # rank 0's BN statistics, as its checkpoint has
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        hits = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)  # (K,)
        seen = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)  # (K,)
        plain_hits = torch.zeros((), dtype=torch.int64, device=self.device)
        for x, y in loader:
            with self.autocast():
                out, plain = self._tta_logits(x, tta)
            out = out.float()
            plain_hits += (plain.argmax(1) == y).sum()
            loss_sum += classification_loss(self.config.optim.loss, out, y,
                                            reduction="sum").double()
            hits += torch.bincount(y[out.argmax(1) == y], minlength=self.num_classes)
            seen += torch.bincount(y, minlength=self.num_classes)
        loss_sum, hits, seen, plain_hits = distributed.all_reduce_sum(loss_sum, hits, seen,
                                                                      plain_hits)
        count = max(int(seen.sum()), 1)
        per_class = [h / n if n else None for h, n in zip(hits.tolist(), seen.tolist())]
        out = {"loss": float(loss_sum) / count, "acc": int(hits.sum()) / count,
               "per_class": per_class}
        if tta != "none":
            out["acc_no_tta"] = int(plain_hits) / count
        return out

    def _tta_logits(self, x: torch.Tensor, tta: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(averaged logits, logits of the plain view). flip: the mean over the image and
        its mirror; flip-translate (the record recipe's, arXiv 2404.00498): half that, half
        the flip-mean over the two one-pixel diagonal shifts (reflect padding)."""
        plain = self.model(x)
        if tta == "none":
            return plain, plain
        flipped = (plain.float() + self.model(x.flip(-1)).float()) / 2
        if tta == "flip":
            return flipped, plain
        pad = F.pad(x, (1, 1, 1, 1), mode="reflect")  # one-pixel shifts, both diagonals
        h, w = x.shape[-2:]
        shifted = [self.model(v).float() + self.model(v.flip(-1)).float()
                   for v in (pad[..., :h, :w], pad[..., 2:, 2:])]
        return flipped / 2 + (shifted[0] + shifted[1]) / 8, plain

    # ------------------------------------------------------------- the loop
    def fit(self) -> RunResult:
        self.check_inputs()
        if self.world.grouped and not self.config.train.quiet:
            p = self.parallel_info()
            self.log(f"data-parallel: {p['world_size']} processes ({p['backend']}), batch "
                     f"{p['effective_batch_size']} = {p['world_size']} x "
                     f"{p['batch_size_per_process']} per process, lr {p['effective_lr']:g} "
                     "per step of the global batch")
        for cb in self.callbacks:
            cb.on_train_begin(self)
        status, message = OK, ""
        t_start = time.perf_counter() - sum(h["epoch_time"] for h in self.history)
        self._keep_good_state()
        while self.epoch < self.epochs and not self.stop_training:
            self.train_loader.set_epoch(self.epoch)
            self.epoch_done = False
            for cb in self.callbacks:
                cb.on_epoch_begin(self, self.epoch)
            self._epoch_t0 = time.perf_counter()
            for x, y in self.train_loader:
                for cb in self.callbacks:
                    cb.on_batch_begin(self, self.step)
                if not self.train_step(x, y):
                    status = DIVERGED
                    message = (f"loss became non-finite at epoch {self.epoch + 1}, step "
                               f"{self.step + 1}; try a lower optim.lr "
                               f"(now {self.config.optim.lr})")
                    break
                self.step += 1
                if self._check_due():
                    if not self._finite_since_check():
                        status, message = DIVERGED, self._rollback()
                        break
                    self._keep_good_state()
                for cb in self.callbacks:
                    cb.on_batch_end(self, self.step, None)
            if status == DIVERGED:
                break
            if not self._finite_since_check():  # never end an epoch on a bad window
                status, message = DIVERGED, self._rollback()
                break
            self.running.time += time.perf_counter() - self._epoch_t0
            self._end_epoch()
            self._keep_good_state()
            exploded = self._explosion_message()
            if exploded:
                status, message = DIVERGED, exploded
                break
        wall = time.perf_counter() - t_start
        if status == OK and self.stop_training:
            status = STOPPED
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self._finish(status, message, wall)

    # ------------------------------------------- the deferred non-finite check
    def _check_due(self) -> bool:
        """A check every ``finite_every`` steps, and before every step checkpoint (so that
        no checkpoint holds a state from a bad window)."""
        every_ckpt = self.config.train.checkpoint_every
        return self.finite_every > 1 and (self.step % self.finite_every == 0
                                          or bool(every_ckpt and self.step % every_ckpt == 0))

    def _finite_since_check(self) -> bool:
        """True when no loss since the last check was non-finite (one host read)."""
        if self.finite_every == 1:
            return True
        (bad,) = distributed.all_reduce_sum(self._nonfinite.to(torch.int32))  # any rank
        return not bool(bad)

    def _keep_good_state(self) -> None:
        """With the deferred check, keep the current state as the one to roll back to: the
        resume state with its tensors cloned (weights and optimizer state on the device;
        only the small sums and random states travel to the host, once per check)."""
        if self.finite_every == 1:
            return
        state = self.state_dict(gather=False)  # this rank's own: no collective
        for key in ("config", "versions"):
            state.pop(key)
        self._good_state = copy.deepcopy(state)

    def _rollback(self) -> str:
        """Return to the state of the last good check (kept at the start of fit, after each
        epoch and at each check) and say which steps the non-finite loss lies between."""
        bad_to = self.step
        self.load_state_dict(self._good_state)
        self._nonfinite.zero_()
        return (f"loss became non-finite at epoch {self.epoch + 1}, between steps "
                f"{self.step + 1} and {bad_to} (checked every {self.finite_every} steps; rolled "
                f"back to step {self.step}); try a lower optim.lr (now {self.config.optim.lr})")

    def _explosion_message(self) -> str:
        """Why the epoch just ended diverged though its loss stayed finite, or ""."""
        loss = self.history[-1]["train_loss"]
        if not is_diverged(loss, self.num_classes, self.initial_loss):
            return ""
        bound = divergence_bound(self.num_classes, self.initial_loss)
        return (f"training loss exploded to {loss:.3g} at epoch {self.epoch} (diverged: above "
                f"{bound:.3g} = max(1000 x ln {self.num_classes} classes, 10 x the initial "
                f"loss)); try a lower optim.lr (now {self.config.optim.lr:g})")

    def _end_epoch(self) -> None:
        sums = self.running
        loss, correct, count = distributed.all_reduce_sum(  # over the ranks' examples
            sums.loss, sums.correct, torch.tensor(sums.count, dtype=torch.int64,
                                                  device=self.device))
        n = max(int(count), 1)
        elapsed = sums.time
        metrics = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "train_loss": float(loss) / n,
            "train_acc": float(correct) / n,
            "val_loss": math.nan,
            "val_acc": math.nan,
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_time": elapsed,
            "images_per_s": int(count) / max(elapsed, 1e-9),  # all ranks, rank 0's clock
        }
        if self.loaders.val is not None and len(self.loaders.val.images):
            val = self.evaluate(self.loaders.val)
            metrics["val_loss"], metrics["val_acc"] = val["loss"], val["acc"]
        if self.config.train.test_curve and self.loaders.test is not None \
                and len(self.loaders.test.images):
            test = self.evaluate(self.loaders.test)  # for curves: nothing monitors it
            metrics["test_loss"], metrics["test_acc"] = test["loss"], test["acc"]
        self.history.append(metrics)
        self.epoch += 1
        self.epoch_done = True
        self.running = EpochSums.zeros(self.device)
        for cb in self.callbacks:
            cb.on_epoch_end(self, self.epoch - 1, metrics)

    def _finish(self, status: str, message: str, wall: float) -> RunResult:
        for cb in self.callbacks:
            cb.on_fit_end(self, status)  # final weights, before the test (precise BN)
        test = {}
        if status != DIVERGED and self.loaders.test is not None and len(self.loaders.test.images):
            test = self.evaluate(self.loaders.test, tta=self.config.train.tta)
        summary = self.summary(status, wall, test)
        for cb in self.callbacks:
            cb.on_summary(self, summary)  # e.g. the sparsity report
        if self.out_dir is not None:
            atomic_write_json(self.out_dir / "summary.json", summary)
        return RunResult(status, self.history, summary, self.model, self.out_dir, message)

    def summary(self, status: str, wall: float, test: dict) -> dict:
        last = self.history[-1] if self.history else {}
        monitor = self.config.train.monitor
        best = self._best_epoch(monitor)
        ips = [h["images_per_s"] for h in self.history]
        final = test.get("acc", last.get("val_acc"))
        final = None if final is None or math.isnan(final) else final
        return {
            "status": run_status(status, final, self.num_classes),
            "trainer_status": status,
            "epochs_completed": len(self.history),
            "steps": self.step,
            "final_train_loss": last.get("train_loss"),
            "final_train_acc": last.get("train_acc"),
            "final_val_loss": last.get("val_loss"),
            "final_val_acc": last.get("val_acc"),
            "monitor": monitor,
            "best_epoch": best.get("epoch"),
            "best_val_acc": best.get("val_acc"),
            "best_val_loss": best.get("val_loss"),
            f"best_{monitor}": best.get(monitor),
            "steps_to_target": self._steps_to_target(),
            "test_loss": test.get("loss"),
            "test_acc": test.get("acc"),
            "test_acc_no_tta": test.get("acc_no_tta", test.get("acc")),
            "test_per_class_acc": (dict(zip(self.loaders.test.classes, test["per_class"]))
                                   if "per_class" in test else None),
            "tta": self.config.train.tta,
            "params": count_params(self.model),
            "wall_time": wall,
            "images_per_s": sum(ips) / len(ips) if ips else None,
            "device": str(self.device),
            "precision": str(self.amp_dtype or "fp32").replace("torch.", ""),
            "channels_last": self.channels_last,
            "keep_freed_memory": self.kept_freed_memory,
            **self.parallel_info(),
        }

    def parallel_info(self) -> dict:
        """How the run is spread: processes, backend, global and per-process batch, and
        the learning rate of a step over the global batch (the optimizer's, e.g. after
        ``optim.per_1024``)."""
        ld = self.train_loader
        return {"world_size": self.world.size, "launched": self.world.grouped,
                "backend": distributed.backend_name(self.device) if self.world.grouped
                else None,
                "batch_size_per_process": ld.batch_size,
                "effective_batch_size": ld.global_batch_size, "effective_lr": self.peak_lr}

    def _steps_to_target(self) -> int | None:
        """Optimizer steps until the first epoch whose training accuracy reached
        ``train.target_train_acc``; None when it is off or never reached."""
        target = self.config.train.target_train_acc
        hit = next((h for h in self.history if target and h["train_acc"] >= target), None)
        return hit["step"] if hit else None

    def _best_epoch(self, monitor: str) -> dict:
        """The history row of the best epoch by ``monitor`` (its mode from the name, as the
        callbacks read it): the one early stopping kept when it watched ``monitor``, else
        the first epoch with the best finite value; {} when none has a value."""
        for cb in self.callbacks:
            if isinstance(cb, EarlyStopping) and cb.monitor == monitor \
                    and 0 <= cb.best_epoch < len(self.history):
                return self.history[cb.best_epoch]
        rows = [h for h in self.history
                if isinstance(h.get(monitor), float | int) and math.isfinite(h[monitor])]
        if not rows:
            return {}
        pick = min if _mode_for(monitor, "auto") == "min" else max
        return pick(rows, key=lambda h: h[monitor])

    # ------------------------------------------------------- checkpointing
    def state_dict(self, weights_only_state: bool = False, gather: bool = True) -> dict:
        """The resume state; with ``gather`` (a collective under DDP) rank 0's holds every
        rank's loader position, random streams and sums, else each rank's only its own."""
        state = {
            "model": self.model.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "initial_loss": self.initial_loss,
            "config": self.config.flat(),
            "versions": {"cnnlab": __version__, "torch": str(torch.__version__)},
        }
        if weights_only_state:
            return state
        own = self._rank_state()
        state.update(
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() or None,  # None when disabled (not fp16)
            callbacks={key: cb.state_dict() for key, cb in self._callback_keys().items()},
            stop_training=self.stop_training,
            world_size=self.world.size,
            **own,  # rank 0's (a single process's) at the top level
        )
        if gather and self.world.size > 1:  # a collective: every rank saves at the same steps
            state["ranks"] = distributed.gather_to_main(own)
        return state

    def _rank_state(self) -> dict:
        """What differs between ranks: loader position, random streams, running sums."""
        accumulators = self.running.state_dict()
        if not self.epoch_done:  # mid-epoch: include the time spent so far in this epoch
            accumulators["time"] += time.perf_counter() - self._epoch_t0
        return {"loader": self.train_loader.state_dict(), "rng": rng_state(),
                "accumulators": accumulators}

    def _callback_keys(self) -> dict[str, Callback]:
        """Callbacks by class name and occurrence ("EarlyStopping#0"), so a checkpoint's
        states find their callbacks even when a run resumes with other callbacks added."""
        keys: dict[str, Callback] = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            n = sum(k.startswith(f"{name}#") for k in keys)
            keys[f"{name}#{n}"] = cb
        return keys

    def save(self, path: Path, weights_only_state: bool = False, keep_previous: bool = True):
        """Write the state to ``path`` (rank 0; the other ranks hand it their part)."""
        state = self.state_dict(weights_only_state)
        if self.world.is_main:
            save_checkpoint(path, state, keep_previous=keep_previous)

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("world_size", 1)
        if saved != self.world.size:
            raise TrainingError(f"the checkpoint was written by {saved} process(es), not "
                                f"{self.world.size}; resume with the same number")
        own = state["ranks"][self.world.rank] if "ranks" in state else state
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # a disabled scaler ignores it
            self.scaler.load_state_dict(state["scaler"])
        self.train_loader.load_state_dict(own["loader"])
        for key, cb in self._callback_keys().items():
            if key in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][key])
        self.epoch, self.step = state["epoch"], state["step"]
        self.history = list(state["history"])
        # unknown (NaN: the bound then uses ln(num_classes) alone) in older checkpoints
        self.initial_loss = state.get("initial_loss", math.nan)
        self.running = EpochSums.from_state(own["accumulators"], self.device)
        self.stop_training = state["stop_training"]
        self.epoch_done = self.train_loader.batch == 0
        set_rng_state(own["rng"])
