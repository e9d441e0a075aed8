"""Parameter counting, shared by the model cards (``cnnlab.models``) and the trainer."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (each shared tensor once); ``trainable_only``
    counts only those with ``requires_grad``. Works on the meta device (shapes only)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["count_params"]
