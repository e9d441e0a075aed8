"""Train the R repetitions of one configuration as one stacked model (``torch.func``).

    results = fit_stacked([model_0, model_1, model_2], "digits", [cfg_0, cfg_1, cfg_2])

Repetition ``i`` is a full :class:`~cnnlab.train.trainer.Trainer` of its own (its model,
loaders with its seed's data order and augmentation stream, optimizer, scheduler,
callbacks, run folder); the stacked trainer only replaces its optimizer steps.  Per step
the R batches are stacked to ``(R, B, C, H, W)`` and one ``vmap`` of ``functional_call``
over the stacked parameters and buffers ``(R, ...)`` (``stack_module_state``) computes the
R forward and backward passes at once (convolutions become grouped ones).  One optimizer
over the stacked tensors is exact for SGD, Adam and AdamW, which are elementwise; what is
not elementwise is done per repetition:

- gradient clipping by global norm: one norm per repetition, over its own slices;
- batch-norm running statistics: buffers are vmapped, so each repetition updates its own;
- a non-finite loss: detected on the device, that repetition's update is masked out
  (parameters and optimizer state kept as before the step, as a separate run stops before
  the bad update), without a host sync per step; the host looks every ``check_every`` steps
  (to stop when every repetition diverged) and at each epoch's end;
- early stopping, target accuracy, divergence by explosion: decided per repetition at
  epoch ends by its own trainer and callbacks; a finished repetition leaves the stack.

At every epoch end each repetition's state (weights, buffers, optimizer state, schedule,
running sums) is copied back into its own trainer, which then evaluates, logs, checkpoints
and early-stops exactly as in a separate run; so each run folder is that of a separate run
and can be resumed stacked or alone.  Not exact: layers that draw random numbers in
training (dropout, drop-path), whose masks cannot come from each repetition's global
generator: :func:`stack_problem` names them and ``fit_stacked`` refuses them unless
``exact=False`` (then each repetition gets different, not reproducible-alone, masks).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from cnnlab.config import RunConfig
from cnnlab.errors import TrainingError
from cnnlab.status import DIVERGED, OK, STOPPED
from cnnlab.train.callbacks import Callback, Checkpoint, ProgressBar
from cnnlab.train.losses import classification_loss
from cnnlab.train.optim import build_scheduler
from cnnlab.train.trainer import EpochSums, RunResult, Trainer

# optimizer-state entries shared by all repetitions (one value per stacked tensor)
_SHARED_STATE = {"step"}
# the callbacks a stacked step knows how to call (every N steps, with the state exported)
_STEP_CALLBACKS = (Checkpoint, ProgressBar)
_STEP_HOOKS = ("on_batch_begin", "on_loss", "on_after_step", "on_batch_end")
_SEED_KEYS = {"train.seed", "train.quiet"}  # may differ between the stacked repetitions


class StackingRefused(TrainingError):
    """These repetitions cannot train as one stacked job (train them one by one); raised
    before anything is written."""


class StackedInfo(Callback):
    """Puts ``stacked_reps`` (how many repetitions shared the stacked job) in the summary."""

    def __init__(self, reps: int):
        self.reps = reps

    def on_summary(self, trainer, summary):
        summary["stacked_reps"] = self.reps


def config_problem(configs: Sequence[RunConfig]) -> str:
    """Why these configurations cannot train as one stacked job ("" when they can)."""
    if not configs:
        return "no repetitions to stack"
    first = configs[0].flat()
    for c in configs[1:]:
        diff = sorted(k for k, v in c.flat().items() if v != first.get(k) and k not in _SEED_KEYS)
        if diff:
            return f"the repetitions differ in more than train.seed ({', '.join(diff[:4])})"
    o, t = configs[0].optim, configs[0].train
    if t.compile:
        return "train.compile = true (the stacked step is not compiled)"
    if o.l1 or o.l2 or o.group_lasso or o.proximal_l1:
        return "a loss penalty or proximal step (optim.l1 / l2 / group_lasso) is per step"
    if t.precision == "fp16":
        return "train.precision = fp16 (one loss scaler would skip every repetition's step)"
    if o.muon:
        return "optim.muon = true (Muon orthogonalizes each filter's update: not elementwise)"
    if o.name == "lamb":
        return "optim.name = lamb (its trust ratio is a norm per weight tensor: not elementwise)"
    return ""


def trainer_problem(trainers: Sequence[Trainer]) -> str:
    """Why these trainers cannot be stacked ("" when they can): see :func:`config_problem`,
    plus per-step callbacks, models of different structure and fp16 autocast."""
    why = config_problem([t.config for t in trainers])
    if why:
        return why
    t0 = trainers[0]
    if t0.amp_dtype == torch.float16:
        return "fp16 autocast (one loss scaler would skip every repetition's step)"
    shapes = [[(n, tuple(p.shape)) for n, p in t.model.state_dict().items()] for t in trainers]
    if any(s != shapes[0] for s in shapes[1:]):
        return "the repetitions' models differ in structure"
    if hasattr(t0.model, "init_from_data"):
        return "the model's first layer is fitted to the data when training starts"
    if len({t.steps_per_epoch for t in trainers}) > 1:
        return "the repetitions have different numbers of steps per epoch"
    for t in trainers:
        for cb in t.callbacks:
            if isinstance(cb, _STEP_CALLBACKS):
                continue
            hooks = [h for h in _STEP_HOOKS
                     if getattr(type(cb), h) is not getattr(Callback, h)]
            if hooks:
                return f"callback {type(cb).__name__} acts every step ({hooks[0]})"
    return ""


class StackedTrainer:
    """Drive R trainers of one configuration (seeds apart) through one stacked model.

    Args:
        trainers: one :class:`Trainer` per repetition, each with its own model, loaders and
            callbacks, already resumed where they resume (all at the same step).
        check_every: optimizer steps between the host's looks at the device-side
            divergence flags (the only syncs inside an epoch, besides the first step's).
        exact: refuse models that draw random numbers in training (see module docstring).
    """

    def __init__(self, trainers: Sequence[Trainer], check_every: int = 50, exact: bool = True):
        self.trainers = list(trainers)
        why = trainer_problem(self.trainers)
        if why:
            raise StackingRefused(f"cannot stack these repetitions: {why}")
        self.check_every = max(1, check_every)
        self.device = self.trainers[0].device
        cfg = self.trainers[0].config
        self.config = cfg
        self.randomness = "error" if exact else "different"
        for t in self.trainers:
            t.callbacks.append(StackedInfo(len(self.trainers)))
        self.live: list[int] = []  # indices into self.trainers of the repetitions in the stack
        self.results: dict[int, RunResult] = {}
        self._t_start: dict[int, float] = {}
        self._checked = False  # the randomness check runs on the first stack only
        # stack now (not in fit): what cannot be stacked is refused before anything is written
        self._stack([i for i, t in enumerate(self.trainers)
                     if t.epoch < t.epochs and not t.stop_training])

    # ------------------------------------------------------------- stacking
    def _stack(self, live: list[int]) -> None:
        """Build the stacked parameters, buffers, optimizer and schedule from the trainers
        ``live`` (their current state: fresh, resumed, or exported at an epoch end)."""
        self.live = live
        if not live:
            return
        ts = [self.trainers[i] for i in live]
        steps = {t.step for t in ts}
        if len(steps) > 1:
            raise StackingRefused(f"cannot stack repetitions at different steps {sorted(steps)}; "
                                "resume them one by one")
        self.step = ts[0].step
        self.R = len(ts)
        params, buffers = stack_module_state([t.model for t in ts])  # name -> (R, ...)
        self.params = {n: p for n, p in params.items()}
        self.buffers = buffers
        self.base = copy.deepcopy(ts[0].model)  # the structure functional_call runs
        self.base.train()
        ref = ts[0].optimizer
        name_of = {id(p): n for n, p in ts[0].model.named_parameters()}
        groups = []
        for g in ref.param_groups:
            hp = {k: v for k, v in g.items() if k != "params"}
            groups.append({**hp, "params": [self.params[name_of[id(p)]] for p in g["params"]]})
        self.optimizer = type(ref)(groups)  # every group carries all its hyper-parameters
        self.optimizer.defaults = dict(ref.defaults)
        self.opt_names = [[name_of[id(p)] for p in g["params"]] for g in ref.param_groups]
        named = [dict(t.model.named_parameters()) for t in ts]
        for names in self.opt_names:
            for n in names:
                states = [t.optimizer.state.get(nm[n]) for t, nm in zip(ts, named)]
                if not states[0]:
                    continue
                self.optimizer.state[self.params[n]] = {
                    k: (v.clone() if k in _SHARED_STATE or not torch.is_tensor(v)
                        else torch.stack([s[k] for s in states]))
                    for k, v in states[0].items()}
        spe = ts[0].steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, ts[0].config.optim,
                                         ts[0].epochs * spe, spe)
        self.scheduler.load_state_dict(ts[0].scheduler.state_dict())
        for g, g_ref in zip(self.optimizer.param_groups, ref.param_groups):
            g["lr"] = g_ref["lr"]  # a new scheduler set its own first lr: take the saved one
        self.clip_params = [p for g in self.optimizer.param_groups for p in g["params"]]
        # epoch sums per repetition, on the device: (R,) each
        self.sum_loss = torch.stack([t.running.loss for t in ts]).to(self.device)
        self.sum_correct = torch.stack([t.running.correct for t in ts]).to(self.device)
        self.sum_count = torch.tensor([t.running.count for t in ts], device=self.device)
        self.ok = torch.ones(self.R, dtype=torch.bool, device=self.device)  # not diverged
        self.bad_step = torch.full((self.R,), -1, dtype=torch.int64, device=self.device)
        if not self._checked:
            self._check_randomness()
            self._checked = True

    def _check_randomness(self) -> None:
        """With ``exact``: refuse a model whose training forward draws random numbers."""
        if self.randomness != "error":
            return
        t = self.trainers[self.live[0]]
        x = t.train_loader.normalize(t.train_loader.to_float(t.train_loader.images[:2]))
        x = x.unsqueeze(0).expand(self.R, *x.shape)
        scratch = {n: b.clone() for n, b in self.buffers.items()}  # BN updates them
        try:
            with torch.no_grad(), t.autocast():
                vmap(self._forward, randomness="error")(self.params, scratch, x)
        except RuntimeError as e:
            if "random" in str(e):
                raise StackingRefused(
                    "cannot stack these repetitions exactly: the model draws random numbers in "
                    "training (dropout or drop-path), whose masks could not come from each "
                    "repetition's seed; train them separately (or pass exact=False)") from None
            raise StackingRefused(f"cannot stack this model with torch.func.vmap: "
                                f"{str(e).splitlines()[0]}") from None

    def _forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))  # (B, C, H, W) -> (B, K)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        o = self.config.optim
        return classification_loss(o.loss, out, y, o.label_smoothing,  # () per repetition
                                   target_threshold=o.target_threshold)

    # ------------------------------------------------------------ exchange
    def _export(self, j: int, t: Trainer) -> None:
        """Copy repetition ``j`` of the stack into its trainer ``t`` (weights, buffers,
        optimizer state, schedule, lr, step, running sums): device copies, no host sync."""
        with torch.no_grad():
            named = dict(t.model.named_parameters())
            for n, p in named.items():
                p.copy_(self.params[n][j])
            for n, b in t.model.named_buffers():
                b.copy_(self.buffers[n][j])
        for names in self.opt_names:
            for n in names:
                s = self.optimizer.state.get(self.params[n])
                if s:
                    t.optimizer.state[named[n]] = {
                        k: (v.clone() if k in _SHARED_STATE or not torch.is_tensor(v)
                            else v[j].clone()) for k, v in s.items()}
        for g_t, g_s in zip(t.optimizer.param_groups, self.optimizer.param_groups):
            g_t["lr"] = g_s["lr"]
        t.scheduler.load_state_dict(self.scheduler.state_dict())
        t.step = self.step
        t.running = EpochSums(self.sum_loss[j].clone(), self.sum_correct[j].clone(),
                              int(self.sum_count[j]), t.running.time)

    # ---------------------------------------------------------------- step
    def train_step(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        """One optimizer step of every repetition in the stack; a repetition whose loss is
        non-finite keeps its weights and optimizer state (masked, on the device)."""
        o = self.config.optim
        x, y = torch.stack(xs), torch.stack(ys)  # (R, B, C, H, W), (R, B) or (R, B, K)
        t0 = self.trainers[self.live[0]]
        # a repetition that diverged at an earlier step keeps its buffers (BN statistics) as a
        # separate run left them: that run's last forward was its non-finite one
        before = {n: b.clone() for n, b in self.buffers.items()}
        with t0.autocast():
            out = vmap(self._forward, randomness=self.randomness)(self.params, self.buffers, x)
        loss = vmap(self._loss)(out, y)  # (R,) in fp32 (the loss outside autocast, as fit)
        ok_before = self.ok
        if any(self.trainers[i].initial_loss is None for i in self.live):
            for i, v in zip(self.live, loss.detach().tolist()):  # one sync, first step only
                if self.trainers[i].initial_loss is None:
                    self.trainers[i].initial_loss = v
        finite = torch.isfinite(loss.detach())
        self.bad_step = torch.where(self.ok & ~finite, self.step, self.bad_step)
        self.ok = self.ok & finite
        ok = self.ok
        for p in self.clip_params:
            p.grad = None
        torch.where(ok, loss, torch.zeros_like(loss)).sum().backward()
        with torch.no_grad():  # after backward: the batch norm's backward reads the buffers
            for n, b in self.buffers.items():
                b.copy_(torch.where(ok_before.view(-1, *[1] * (b.ndim - 1)), b, before[n]))
        grads = [p.grad for p in self.clip_params if p.grad is not None]
        if o.grad_clip and grads:
            # clip_grad_norm_ per repetition: the global norm over that repetition's slices
            norms = torch.stack([torch.linalg.vector_norm(g.reshape(self.R, -1), dim=1)
                                 for g in grads], dim=1)  # (R, P)
            total = torch.linalg.vector_norm(norms, dim=1)  # (R,)
            coef = (o.grad_clip / (total + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(coef.view(-1, *[1] * (g.ndim - 1)).to(g.dtype))
        held = self._hold(ok, grads)
        self.optimizer.step()
        self._restore(ok, held)
        self.scheduler.step()
        n = len(xs[0])
        okd = ok.to(torch.float64)
        self.sum_loss += loss.detach().double().nan_to_num(0.0) * n * okd
        hard = y if y.ndim == 2 else y.argmax(-1)
        self.sum_correct += (out.argmax(-1) == hard).sum(-1) * ok
        self.sum_count += n * ok
        self.step += 1

    def _hold(self, ok: torch.Tensor, grads: list[torch.Tensor]) -> list:
        """Before the step: zero the gradients of the repetitions not ``ok`` and keep a copy
        of their parameters and optimizer state, which :meth:`_restore` puts back."""
        held = []
        for g in grads:
            g.copy_(torch.where(ok.view(-1, *[1] * (g.ndim - 1)), g, torch.zeros_like(g)))
        for p in self.clip_params:
            state = self.optimizer.state.get(p, {})
            held.append((p, p.detach().clone(),
                         {k: v.clone() for k, v in state.items()
                          if k not in _SHARED_STATE and torch.is_tensor(v)
                          and v.shape == p.shape}))
        return held

    def _restore(self, ok: torch.Tensor, held: list) -> None:
        with torch.no_grad():
            for p, old, old_state in held:
                m = ok.view(-1, *[1] * (p.ndim - 1))
                p.copy_(torch.where(m, p, old))
                state = self.optimizer.state.get(p, {})
                for k, v in old_state.items():
                    state[k].copy_(torch.where(m, state[k], v))
                for k, v in state.items():  # state created by this step (a first step)
                    if k not in old_state and k not in _SHARED_STATE and torch.is_tensor(v) \
                            and v.shape == p.shape:
                        v.copy_(torch.where(m, v, torch.zeros_like(v)))

    # ---------------------------------------------------------------- loop
    def fit(self) -> list[RunResult]:
        """Train every repetition to its end; the RunResults in the trainers' order."""
        for i, t in enumerate(self.trainers):
            t.check_inputs()
            for cb in t.callbacks:
                cb.on_train_begin(t)
            self._t_start[i] = time.perf_counter() - sum(h["epoch_time"] for h in t.history)
            if i not in self.live:  # resumed after its end
                self._finish(i, STOPPED if t.stop_training else OK, "")
        while self.live:
            self._epoch()
        return [self.results[i] for i in range(len(self.trainers))]

    def _epoch(self) -> None:
        ts = [self.trainers[i] for i in self.live]
        t0 = time.perf_counter()
        for t in ts:
            t.train_loader.set_epoch(t.epoch)
            t.epoch_done = False
            for cb in t.callbacks:
                cb.on_epoch_begin(t, t.epoch)
            t._epoch_t0 = t0
        its = [iter(t.train_loader) for t in ts]
        every = self.config.train.checkpoint_every
        for _ in range(ts[0].train_loader.batch, ts[0].steps_per_epoch):
            batches = [next(it) for it in its]
            self.train_step([x for x, _ in batches], [y for _, y in batches])
            if every and self.step % every == 0:
                self._step_callbacks()
            if self.step % self.check_every == 0 and not bool(self.ok.any()):
                break  # every repetition diverged: nothing left to compute this epoch
        for it in its:
            for _ in it:  # run each loader to its end (it then moves to the next epoch)
                pass
        elapsed = time.perf_counter() - t0
        bad = self.bad_step.tolist()  # the epoch's one sync
        keep = []
        for j, i in enumerate(self.live):
            t = self.trainers[i]
            self._export(j, t)
            if bad[j] >= 0:
                t.step = bad[j]
                self._finish(i, DIVERGED, f"loss became non-finite at epoch {t.epoch + 1}, "
                             f"step {t.step + 1}; try a lower optim.lr (now {t.config.optim.lr})")
                continue
            t.running.time += elapsed
            t._end_epoch()
            exploded = t._explosion_message()
            if exploded:
                self._finish(i, DIVERGED, exploded)
            elif t.stop_training or t.epoch >= t.epochs:
                self._finish(i, STOPPED if t.stop_training else OK, "")
            else:
                keep.append(i)
        if keep:
            self._stack(keep)  # rebuilt from the exported trainers, without the finished
        else:
            self.live = []

    def _step_callbacks(self) -> None:
        """Mid-epoch checkpoints (``train.checkpoint_every``): export the repetitions still
        finite and call their per-step callbacks (a sync every N steps)."""
        ok = self.ok.tolist()
        for j, i in enumerate(self.live):
            if ok[j]:
                t = self.trainers[i]
                self._export(j, t)
                for cb in t.callbacks:
                    cb.on_batch_end(t, self.step, None)

    def _finish(self, i: int, status: str, message: str) -> None:
        t = self.trainers[i]
        wall = time.perf_counter() - self._t_start[i]
        for cb in t.callbacks:
            cb.on_train_end(t)
        self.results[i] = t._finish(status, message, wall)


def fit_stacked(models: Sequence[nn.Module], data, configs: Sequence[RunConfig],
                out_dirs: Sequence[str | Path] | None = None, resume: bool | str = False,
                check_every: int = 50, exact: bool = True) -> list[RunResult]:
    """Train ``models[i]`` with ``configs[i]`` (equal but for ``train.seed``) as one stacked
    job; the same results, run folders and checkpoints as R calls of
    :func:`cnnlab.train.fit` (to float tolerance).  ``resume`` as in ``fit``: each folder
    resumes from its own checkpoint, and all must stand at the same step."""
    from cnnlab.train.hardware import resolve_channels_last, resolve_device
    from cnnlab.train.run import (
        _as_dataset,
        _locked_run_folder,
        _remove_created,
        _resume_state,
        _write_run_folder,
        build_loaders,
    )

    if len(models) != len(configs) or (out_dirs is not None and len(out_dirs) != len(models)):
        raise TrainingError(f"fit_stacked needs one config (and run folder) per model: got "
                            f"{len(models)} models, {len(configs)} configs")
    why = config_problem(list(configs))
    if why:
        raise StackingRefused(f"cannot stack these repetitions: {why}")
    prepared = [_as_dataset(data, c) for c in configs]
    with contextlib.ExitStack() as stack:
        trainers, made = [], []  # made: (folder this call created or None, files written)
        started = False
        try:
            for k, (model, (ds, cfg)) in enumerate(zip(models, prepared)):
                device = resolve_device(cfg.train.device)
                channels_last = resolve_channels_last(cfg.train.channels_last, device)
                loaders, stats = build_loaders(ds, cfg, device, channels_last)
                out = Path(out_dirs[k]) if out_dirs is not None else None
                state = None
                if out is not None:
                    made.append((stack.enter_context(_locked_run_folder(out)), []))
                    if resume:
                        state = _resume_state(out, cfg, required=resume is True)
                    ckpts = out / "checkpoints"
                    if state is None and any((ckpts / n).exists()
                                             for n in ("last.pt", "last.prev.pt")):
                        raise TrainingError(f"{out} already holds a run; resume it or choose "
                                            "another folder")
                t = Trainer(model, loaders, cfg, out_dir=out, num_classes=ds.num_classes,
                            progress=False)
                t.check_inputs()
                if out is not None and state is None:
                    made[-1][1].extend(p for p in (out / "config.json", out / "run.toml")
                                       if not p.exists())
                    _write_run_folder(out, cfg, ds, stats, model, t.parallel_info())
                elif state is not None:
                    t.load_state_dict(state)
                trainers.append(t)
            runner = StackedTrainer(trainers, check_every=check_every, exact=exact)
            started = True
            return runner.fit()
        except BaseException:
            if not started:  # refused before the first step: leave no stub folders
                for folder, files in made:
                    _remove_created(folder, files)
            raise


__all__ = ["StackedTrainer", "StackingRefused", "config_problem", "fit_stacked",
           "trainer_problem"]
