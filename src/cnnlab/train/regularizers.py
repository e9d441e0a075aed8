"""Penalties added to the loss (L2, L1, group lasso), the proximal L1 step and a sparsity report.

By default the penalties apply to the weights of convolutions and linear layers only
(``penalized_weights``); biases and normalization parameters are left alone.

    loss = criterion(model(x), y) + penalty(model, l1=1e-5, l2=5e-4, group_lasso=1e-4)

Written out, for the weight tensors W of the model::

    penalty = l2 / 2 * sum_W ||W||_2^2                       (gradient: l2 * W)
            + l1     * sum_W ||W||_1                         (subgradient: l1 * sign(W))
            + group_lasso * sum_W sum_g sqrt(|g|) * ||W_g||_2

The groups g of group lasso are the weights of each output unit (``group_by="output"``,
default): a row W[o, :] of a linear layer, a filter W[o, :, :, :] of a convolution; the
weight sqrt(|g|) (the group's size) keeps big and small groups on the same footing
(Yuan & Lin 2006; Wen et al. 2016 for filters). ``group_by="input"`` groups the columns
instead, W[:, i]: the outgoing weights of each unit (or input channel) of the layer below
(Scardapane et al. 2017). Driving a group to zero removes a whole neuron or filter.

L1 as a loss term only makes weights small, never exactly zero (its subgradient makes
them oscillate around zero). The proximal step :func:`proximal_l1_`, called after each
optimizer step *instead of* the l1 loss term, soft-thresholds the weights and yields exact
zeros (ISTA; Parikh & Boyd 2014). :func:`sparsity_report` counts weights and whole units
below a threshold after training.

Weight decay: coupled L2 penalty vs decoupled decay
----------------------------------------------------

For a weight w with loss gradient g and learning rate lr, side by side::

                    L2 penalty (coupled)                   decoupled weight decay
    loss            L + l2/2 * ||w||^2                     L
    gradient        g + l2 * w                             g
    SGD step        w -= lr * (g + l2 * w)                 w -= lr * g + lr * wd * w
    Adam step       w -= lr * adam(g + l2 * w)             w -= lr * adam(g) + lr * wd * w
    torch           SGD/Adam(weight_decay=l2)              AdamW(weight_decay=wd)

(adam(.) is the update m_hat / (sqrt(v_hat) + eps) built from its argument's moments.)

- Plain SGD: the two are the same update when wd = l2. ``SGD(weight_decay=wd)`` is exactly
  the loss ``L + wd/2 * ||w||^2``, i.e. ``penalty(model, l2=wd)`` (the 1/2 is why this module
  writes the L2 term with one: the coefficient *is* the weight decay). Rescaling: a penalty
  written as ``lam * ||w||^2`` needs wd = 2 * lam, and a decay given as a per-step factor
  ``w *= 1 - d`` needs wd = d / lr. With momentum, ``SGD(weight_decay=wd)`` still equals the
  L2 penalty exactly, but no longer the decoupled step (SGDW), whose decay bypasses the
  momentum buffer.
- Adam: the L2 gradient passes through Adam's per-weight normalization, so weights with a
  large gradient history are decayed less, and the effective decay is not ``lr * l2 * w``.
  Decoupled decay (AdamW; Loshchilov & Hutter 2019) shrinks every weight by the same
  ``lr * wd`` fraction and generalizes better. The two do not coincide for any rescaling.

The trainer's ``optim.weight_decay`` with ``optim.decay_mode`` chooses between them; the
penalties here are ``optim.l1``, ``optim.l2``, ``optim.group_lasso`` and
``optim.proximal_l1``. ``tests/train/test_regularizers.py`` checks all of the above.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from cnnlab.errors import ConfigError
from cnnlab.utils.table import text_table

GROUP_BY = ("output", "input")


def penalized_weights(model: nn.Module) -> Iterator[tuple[str, nn.Module, torch.Tensor]]:
    """Yield ``(name, module, weight)`` for the weight of each conv and linear layer.

    Names are module names (``"features.0.0.conv"``); a weight shared by several layers is
    yielded once.
    """
    seen: set[int] = set()
    for name, m in model.named_modules():
        if isinstance(m, _ConvNd | nn.Linear):
            w = m.weight
            if isinstance(w, torch.Tensor) and id(w) not in seen:
                seen.add(id(w))
                yield name, m, w


def _units(module: nn.Module, w: torch.Tensor, group_by: str) -> torch.Tensor:
    """View ``w`` as (groups, group size): one row per output unit or per input unit."""
    if group_by not in GROUP_BY:
        raise ConfigError(f"group_by must be 'output' or 'input', got {group_by!r}")
    if isinstance(module, _ConvNd) and module.transposed:
        w = w.transpose(0, 1)  # transposed convs store (in, out / groups, k...)
    if group_by == "input":
        w = w.transpose(0, 1)  # (in, out, k...)
    return w.flatten(1)  # (units, size)


def _check_coef(**coefs: float) -> None:
    for k, v in coefs.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ConfigError(f"penalty coefficient {k} must be a number >= 0, got {v!r}")


def penalty(
    model: nn.Module,
    l1: float = 0.0,
    l2: float = 0.0,
    group_lasso: float = 0.0,
    group_by: str = "output",
) -> torch.Tensor:
    """The regularization term to add to the loss, a 0-d tensor (see the module docstring):
    ``l2/2 * sum W^2 + l1 * sum |W| + group_lasso * sum_g sqrt(|g|) ||W_g||``.

    Over the weights of conv and linear layers only. All coefficients zero gives a constant
    zero (no graph), so the call costs nothing when regularization is off.
    """
    _check_coef(l1=l1, l2=l2, group_lasso=group_lasso)
    weights = list(penalized_weights(model))
    device = weights[0][2].device if weights else None
    total = torch.zeros((), device=device)
    if not (l1 or l2 or group_lasso):
        return total
    for _, module, w in weights:
        if l2:
            total = total + (l2 / 2) * w.pow(2).sum()
        if l1:
            total = total + l1 * w.abs().sum()
        if group_lasso:
            g = _units(module, w, group_by)  # (units, size)
            total = total + group_lasso * (g.shape[1] ** 0.5) * torch.linalg.vector_norm(
                g, dim=1).sum()
    return total


@torch.no_grad()
def proximal_l1_(model: nn.Module, lr: float, l1: float) -> None:
    """Soft-threshold the conv and linear weights in place, after an optimizer step:
    ``w <- sign(w) * max(|w| - lr * l1, 0)``.

    This is the proximal operator of ``lr * l1 * ||w||_1``: together with a gradient step
    on the unpenalized loss it is one ISTA step, which sets small weights to exactly zero.
    Use it instead of (not together with) ``penalty(l1=...)``; pass the learning rate of
    the step just taken. Runs on the weights' device without synchronizing; count the
    exact zeros afterwards with ``sparsity_report(model, threshold=1e-30)``.
    """
    _check_coef(lr=lr, l1=l1)
    thresh = lr * l1
    if thresh == 0:
        return
    for _, _, w in penalized_weights(model):
        w.copy_(torch.sign(w) * (w.abs() - thresh).clamp_min(0))  # soft-thresholding


@torch.no_grad()
def sparsity_report(model: nn.Module, threshold: float = 1e-3,
                    group_by: str = "output") -> dict:
    """Fraction of weights, and of whole units (neurons or filters), with |w| < threshold.

    A unit counts as zero when all weights of its group (see ``group_by``) are below the
    threshold. Returns::

        {"threshold": t,
         "layers": {name: {"weights", "zero_weights", "weight_fraction",
                           "units", "zero_units", "unit_fraction"}, ...},
         "total": {same keys, summed over layers}}
    """
    if not threshold >= 0:
        raise ConfigError(f"sparsity threshold must be >= 0, got {threshold!r}")
    layers: dict[str, dict] = {}
    tot = {"weights": 0, "zero_weights": 0, "units": 0, "zero_units": 0}
    for name, module, w in penalized_weights(model):
        small = _units(module, w, group_by).abs() < threshold  # (units, size)
        row = {"weights": small.numel(), "zero_weights": int(small.sum()),
               "units": small.shape[0], "zero_units": int(small.all(dim=1).sum())}
        for k in tot:
            tot[k] += row[k]
        layers[name or type(module).__name__] = _fractions(row)
    return {"threshold": threshold, "layers": layers, "total": _fractions(tot)}


def _fractions(row: dict) -> dict:
    row["weight_fraction"] = row["zero_weights"] / row["weights"] if row["weights"] else 0.0
    row["unit_fraction"] = row["zero_units"] / row["units"] if row["units"] else 0.0
    return row


def format_sparsity(report: dict) -> str:
    """A plain-text table of :func:`sparsity_report`'s result, one line per layer."""
    rows = [[name, str(r["weights"]), f"{r['weight_fraction']:.1%}", str(r["units"]),
             f"{r['unit_fraction']:.1%}"]
            for name, r in [*report["layers"].items(), ("total", report["total"])]]
    return text_table(["layer", "weights", "zero", "units", "zero"], rows, right={1, 2, 3, 4})


__all__ = ["format_sparsity", "penalized_weights", "penalty", "proximal_l1_", "sparsity_report"]
