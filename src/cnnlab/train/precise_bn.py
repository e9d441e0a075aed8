"""Batch-norm population statistics recomputed exactly after training ("precise BN").

During training, BN keeps exponential running averages of the batch means and variances,
dominated by the last few hundred batches and taken while the weights were still moving.
:func:`precise_bn` replaces them with the exact mean and variance of each BN layer's input
over a set of batches, for the final weights (Wu & Johnson 2021, "Rethinking 'Batch' in
BatchNorm", Sec. 3)::

    model = cnnlab.precise_bn(model, train_batches, num_batches=200)

and :func:`bn_eval_modes` shows what that changes::

    bn_eval_modes(model, train_batches, val_batches)
    # {"running": 0.912, "precise": 0.918, "batch": 0.905}

Pass training batches with augmentation off: the statistics should describe the inputs
the model will see at evaluation.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cnnlab.errors import ModelError


def bn_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BN layers of ``model`` that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None]


def _inputs(batch) -> torch.Tensor:
    """The input tensor of a batch given as ``x`` or ``(x, y, ...)``."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, tuple | list) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise ModelError(f"expected batches of (x, y) or x tensors, got {type(batch).__name__}")


def _device(model: nn.Module) -> torch.device | None:
    p = next(itertools.chain(model.parameters(), model.buffers()), None)
    return p.device if p is not None else None


class _Moments:
    """Per-channel count, mean and sum of squared deviations (M2) of a BN layer's inputs,
    merged batch by batch in float64 (Chan et al. 1979): exact, not an average of
    per-batch variances."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None  # (C,)
        self.m2: torch.Tensor | None = None  # (C,)

    def __call__(self, module: nn.Module, args: tuple) -> None:  # forward pre-hook
        x = args[0].detach().double()  # (B, C, *spatial)
        dims = [0, *range(2, x.dim())]  # every axis but C
        n_b = x.numel() // x.shape[1]
        var_b, mean_b = torch.var_mean(x, dim=dims, correction=0)
        m2_b = var_b * n_b
        if self.n == 0:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta.square() * (self.n * n_b / n)
        self.n = n


@contextmanager
def _preserved(model: nn.Module, bns: list[_BatchNorm]) -> Iterator[None]:
    """Restore every module's train/eval flag and the BN buffers on exit."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.clone()) for bn in bns
               for b in (bn.running_mean, bn.running_var, bn.num_batches_tracked)
               if b is not None]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def _batch_stat_mode(model: nn.Module, bns: list[_BatchNorm]) -> None:
    """Everything in eval mode (dropout off) except BN, which normalizes with batch stats."""
    model.eval()
    for bn in bns:
        bn.train()


def precise_bn(model: nn.Module, batches: Iterable, num_batches: int | None = None
               ) -> nn.Module:
    """Set every BN layer's running mean and variance to the exact population statistics
    of its inputs over ``batches`` (the first ``num_batches`` of them; None = all).

    The model runs as in training as far as BN is concerned (each BN layer normalizes with
    its batch statistics, so every layer sees the inputs it saw in training) but with
    dropout and other stochastic layers in eval mode. For each BN layer the per-channel
    mean and variance of its input over all N samples x pixels seen are accumulated exactly
    (in float64, merged across batches), and stored as ``running_mean`` and
    ``running_var``. The variance is the population (biased, / N) variance: what train-mode
    BN would normalize with if the whole set were one batch. (torch's running average
    stores unbiased batch variances; for N in the thousands the difference is negligible.)

    Each module's train/eval mode is restored afterwards, and ``num_batches_tracked`` is
    left as it was. Returns ``model`` (updated in place). A model without BN is returned
    unchanged; a BN layer that no batch reached keeps its statistics.
    """
    if num_batches is not None and (isinstance(num_batches, bool) or num_batches < 1):
        raise ModelError(f"precise_bn num_batches must be >= 1 or None, got {num_batches!r}")
    bns = bn_layers(model)
    if not bns:
        return model
    moments = [_Moments() for _ in bns]
    device = _device(model)
    handles = [bn.register_forward_pre_hook(mo) for bn, mo in zip(bns, moments)]
    seen = 0
    try:
        with _preserved(model, bns), torch.no_grad():
            _batch_stat_mode(model, bns)
            for batch in itertools.islice(batches, num_batches):
                x = _inputs(batch)
                model(x.to(device) if device is not None else x)
                seen += 1
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ModelError("precise_bn got no batches; pass a non-empty iterable of (x, y)")
    with torch.no_grad():
        for bn, mo in zip(bns, moments):
            if mo.n == 0:
                continue
            bn.running_mean.copy_(mo.mean.to(bn.running_mean.dtype))
            bn.running_var.copy_((mo.m2 / mo.n).to(bn.running_var.dtype))
    return model


@torch.no_grad()
def _accuracy(model: nn.Module, batches: Iterable, bns: list[_BatchNorm] | None) -> float:
    """Top-1 accuracy over ``batches``; ``bns`` given: those normalize with batch stats."""
    if bns is None:
        model.eval()
    else:
        _batch_stat_mode(model, bns)
    device = _device(model)
    correct = total = 0
    for batch in batches:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise ModelError("bn_eval_modes needs evaluation batches of (x, y)")
        x, y = batch[0], batch[1]
        if device is not None:
            x, y = x.to(device), y.to(device)
        pred = model(x).argmax(dim=1)  # (B,)
        if y.dim() > 1:
            y = y.argmax(dim=1)  # soft / one-hot labels
        correct += int((pred == y).sum())
        total += len(y)
    if total == 0:
        raise ModelError("bn_eval_modes got no evaluation samples; pass a list or a "
                         "re-iterable loader (it is read three times)")
    return correct / total


def bn_eval_modes(model: nn.Module, train_batches: Iterable, eval_batches: Iterable,
                  num_batches: int | None = None) -> dict[str, float]:
    """Evaluation accuracy of ``model`` with three kinds of BN statistics.

    - ``"running"``: the running averages kept during training (plain ``model.eval()``);
    - ``"precise"``: population statistics recomputed by :func:`precise_bn` over the first
      ``num_batches`` of ``train_batches`` (augmentation off);
    - ``"batch"``: each evaluation batch's own statistics (BN in train mode without
      updating its running statistics), so results depend on the evaluation batch size.

    ``eval_batches`` is read three times, so it must be a list or a re-iterable loader.
    The model is left as it was: its BN statistics and train/eval modes are restored.
    """
    bns = bn_layers(model)
    with _preserved(model, bns):
        running = _accuracy(model, eval_batches, None)
    with _preserved(model, bns):
        batch = _accuracy(model, eval_batches, bns)
    with _preserved(model, bns):
        precise_bn(model, train_batches, num_batches)
        precise = _accuracy(model, eval_batches, None)
    return {"running": running, "precise": precise, "batch": batch}


__all__ = ["bn_eval_modes", "bn_layers", "precise_bn"]
