"""Cross-entropy for hard labels (B,) or soft targets (B, K), with label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy. ``target`` is int64 (B,) class indices or float (B, K) soft
    targets (MixUp/CutMix); smoothing mixes the target with the uniform distribution."""
    logits = logits.float()  # loss in fp32 even under autocast
    if target.ndim == 1:
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    k = logits.shape[1]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / k
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def hard_labels(target: torch.Tensor) -> torch.Tensor:
    """(B,) class indices from hard or soft targets (the dominant class of a mix)."""
    return target if target.ndim == 1 else target.argmax(1)
