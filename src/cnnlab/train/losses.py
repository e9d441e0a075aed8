"""Training losses over logits (B, K) and hard (B,) or soft (B, K) targets.

``optim.loss`` picks one: ``cross-entropy`` (with label smoothing); ``bce``, binary
cross-entropy of K one-vs-all sigmoids (:func:`binary_cross_entropy`, "ResNet strikes
back"); or ``mse``, the squared error between the logits and the one-hot (or soft) target,
summed over classes and averaged over the batch, as Liu et al. 2022 ("Omnigrok") train
their grokking MLPs.
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


def binary_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                         label_smoothing: float = 0.0, target_threshold: float = 0.0,
                         reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of each class's sigmoid against its target in [0, 1]:

        q   = t (1 - s) + s / K                    # smoothing s, as the cross-entropy's
        q   = [q > threshold]                      # only when target_threshold > 0
        l_i = mean_k -(q_ik log sigma(z_ik) + (1 - q_ik) log(1 - sigma(z_ik)))

    ``target`` is class indices (B,) or soft (B, K) targets (MixUp/CutMix: both classes of
    a mix count as present, at their weights, or as 1 above the threshold: Wightman et al.
    2021 use 0.2). Per sample the K terms are averaged (timm's and PyTorch's mean over
    B x K); ``reduction`` then means or sums over the batch."""
    logits = logits.float()
    k = logits.shape[1]
    q = target.float() if target.ndim == 2 else F.one_hot(target, k).float()
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / k
    if target_threshold:
        q = (q > target_threshold).float()
    per_sample = F.binary_cross_entropy_with_logits(logits, q, reduction="none").mean(1)
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
                        label_smoothing: float = 0.0, reduction: str = "mean",
                        target_threshold: float = 0.0) -> torch.Tensor:
    """The loss ``optim.loss`` names (see the module docstring); ``target_threshold``
    is the ``bce`` loss's."""
    if name == "mse":
        return squared_error(logits, target, reduction)
    if name == "bce":
        return binary_cross_entropy(logits, target, label_smoothing, target_threshold,
                                    reduction)
    return cross_entropy(logits, target, label_smoothing, reduction)


def hard_labels(target: torch.Tensor) -> torch.Tensor:
    """(B,) class indices from hard or soft targets (the dominant class of a mix)."""
    return target if target.ndim == 1 else target.argmax(1)
