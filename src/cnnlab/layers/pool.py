"""Global average pooling whose gradient keeps the input's memory format.

``nn.AdaptiveAvgPool2d(1)`` computes a mean over H and W; its backward pass hands the layer
below an expanded (stride-0) gradient, which reads as NCHW.  On a CPU, a max-pool below it
(the last VGG block) then takes its NCHW backward path with a channels-last input: it
transposes its zeroed input gradient to NCHW, scatters, and transposes back, twice the size
of its input in copies per step.  Measured on a 2-core Zen 4 CPU (one thread, batch 128,
VGG 1x1 at 32x32, bf16 autocast + channels_last): that was 58 % of the step's time, and the
step ran 2.3x faster with the gradient made channels-last first.  The values are the same:
only their layout in memory changes, so training is bit-for-bit identical.
"""

from __future__ import annotations

import torch
from torch import nn


def _channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)  # (B, C, H, W), C innermost


def _wants_channels_last_grad(x: torch.Tensor) -> bool:
    """A CPU (B, C, H, W) tensor in channels-last layout (and not NCHW too) that needs a
    gradient, outside torch.compile (which chooses its own layouts)."""
    if not x.requires_grad or x.device.type != "cpu" or x.dim() != 4 \
            or torch.compiler.is_compiling():
        return False
    try:
        return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    except RuntimeError:  # under torch.func.vmap the layout cannot be queried: leave it
        return False


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """(B, C, H, W) -> (B, C, 1, 1) mean, as ``nn.AdaptiveAvgPool2d(1)`` (same forward, same
    gradient values); on a CPU its gradient comes back in the input's channels-last layout."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _wants_channels_last_grad(x):
            x.register_hook(_channels_last)  # runs before the layer below gets the gradient
        return super().forward(x)
