"""Training losses over logits (B, K) and hard (B,) or soft (B, K) targets.

``optim.loss`` picks one: ``cross-entropy`` (with label smoothing) or ``mse``, the squared
error between the logits and the one-hot (or soft) target, summed over classes and averaged
over the batch, as Liu et al. 2022 ("Omnigrok") train their grokking MLPs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                  label_smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy. ``target`` is int64 (B,) class indices or float (B, K) soft
    targets (MixUp/CutMix); smoothing mixes the target with the uniform distribution."""
    logits = logits.float()  # loss in fp32 even under autocast
    if target.ndim == 1:
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing,
                               reduction=reduction)
    k = logits.shape[1]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / k
    per_sample = -(target * F.log_softmax(logits, dim=1)).sum(1)  # (B,)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def squared_error(logits: torch.Tensor, target: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    """Squared error to the one-hot (or soft) target, summed over the K classes: (B,) ->
    mean or sum over the batch."""
    logits = logits.float()
    if target.ndim == 1:
        target = F.one_hot(target, logits.shape[1]).float()
    per_sample = (logits - target).pow(2).sum(1)  # (B,)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def classification_loss(name: str, logits: torch.Tensor, target: torch.Tensor,
                        label_smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """The loss ``optim.loss`` names (see the module docstring)."""
    if name == "mse":
        return squared_error(logits, target, reduction)
    return cross_entropy(logits, target, label_smoothing, reduction)


def hard_labels(target: torch.Tensor) -> torch.Tensor:
    """(B,) class indices from hard or soft targets (the dominant class of a mix)."""
    return target if target.ndim == 1 else target.argmax(1)
