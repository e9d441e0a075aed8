"""Convolution with a dense-matrix path for maps smaller than the kernel.

A 3x3 convolution (padding 1) on a 2x2 map touches only 4 of its 9 taps per output pixel;
on a 1x1 map only the centre tap. oneDNN still runs it as a convolution over the padded
map, and on small maps that is slow: a VGG cell's fifth block (2x2 maps, 256 -> 512 -> 512
channels, batch 128) took 57 % of a 5x3 training step on an Intel Xeon with AMX, at 56
GFLOP/s against a bf16 GEMM peak of 869 per core. Written out as one matrix from the
H*W*C_in input values to the C_out*H_o*W_o outputs, the same convolution is a
single GEMM that does only the FLOPs that touch real pixels (4/9 of the nominal count on a
2x2 map, 1/9 on a 1x1 map): 3.5-6x faster for forward + backward there in three
measurements of the 256 -> 512 and 512 -> 512 layers.

:class:`Conv2d` is ``nn.Conv2d`` (same arguments, parameters and state dict) that takes
that path on the CPU when the map has fewer pixels than the kernel has taps, the only case
where the dense matrix is smaller than the convolution's work (on a 4x4 map it is 16/9
larger, and measured 3.5-3.7x slower). At equality (a 3x3 map under a 3x3 kernel) it does
the nominal work, padding taps included, in one GEMM, and whether that pays depends on the
CPU and the shape: on Zen 5, ``benchmarks/small_map.py`` measured speednet's last
convolution (256 -> 256 on 3x3 maps, batch 1,024) 1.09x and 1.25x faster in two runs and
a 512 -> 512 one at batch 128 0.64x and 0.59x as fast (presumably the cost of rebuilding
its 4,608 x 4,608 matrix, and of scattering its gradient back onto the taps, every step),
so the path stops short of it.
Elsewhere, and on GPUs, where it has not been measured, it is ``nn.Conv2d``.
:func:`stock_convs` turns a model's ``Conv2d`` back into ``nn.Conv2d``, for a baseline that
is plain PyTorch.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


@functools.lru_cache(maxsize=64)
def tap_index(h: int, w: int, kh: int, kw: int, ph: int, pw: int) -> torch.Tensor:
    """(H_o*W_o, H*W) int64: for output pixel p and input pixel q (row-major), the kernel
    tap ``ky * kw + kx`` that joins them, or ``kh * kw`` where q lies outside p's window
    (stride 1, no dilation)."""
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    oy, ox = torch.arange(ho).view(-1, 1, 1, 1), torch.arange(wo).view(1, -1, 1, 1)
    iy, ix = torch.arange(h).view(1, 1, -1, 1), torch.arange(w).view(1, 1, 1, -1)
    ky, kx = iy - oy + ph, ix - ox + pw
    inside = (ky >= 0) & (ky < kh) & (kx >= 0) & (kx < kw)
    return torch.where(inside, ky * kw + kx, kh * kw).reshape(ho * wo, h * w)


def small_map_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1, no dilation, one group) as
    one GEMM: (B, H*W*C_in) @ (H*W*C_in, C_out*H_o*W_o). Returns (B, C_out, H_o, W_o),
    contiguous (on maps this small the layout costs nothing to change); gradients reach
    ``x``, ``weight`` and ``bias`` through autograd."""
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    ho, wo = h + 2 * padding[0] - kh + 1, w + 2 * padding[1] - kw + 1
    index = tap_index(h, w, kh, kw, *padding).to(weight.device).flatten()  # (p, q) pairs
    if torch.is_autocast_enabled(x.device.type):  # gather the matrix in the GEMM's dtype
        weight = weight.to(torch.get_autocast_dtype(x.device.type))
    taps = weight.permute(0, 2, 3, 1).reshape(c_out, kh * kw, c_in)  # a view if channels_last
    taps = F.pad(taps, (0, 0, 0, 1))  # tap kh * kw: zeros, for pixels outside a window
    # (C_out, p * q, C_in): rows (C_out, p), columns (q, C_in)
    matrix = taps.index_select(1, index).view(c_out * ho * wo, h * w * c_in)
    pixels = x.permute(0, 2, 3, 1).reshape(n, h * w * c_in)  # a view if channels_last
    bias = None if bias is None else bias.repeat_interleave(ho * wo)
    return F.linear(pixels, matrix, bias).view(n, c_out, ho, wo)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs :func:`small_map_conv2d` on the CPU when the input map has
    fewer pixels than the kernel has taps (see the module docstring)."""

    def uses_small_map_path(self, x: torch.Tensor) -> bool:
        if isinstance(self.padding, str) or x.device.type != "cpu" or x.dim() != 4:
            return False  # "same" / "valid" padding, GPUs, unbatched input
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        return (x.shape[-2] * x.shape[-1] < kh * kw
                and x.shape[-2] + 2 * ph >= kh and x.shape[-1] + 2 * pw >= kw
                and self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1
                and self.padding_mode == "zeros")

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if self.uses_small_map_path(x):
            return small_map_conv2d(x, weight, bias, self.padding)
        return super()._conv_forward(x, weight, bias)


def stock_convs(model: nn.Module) -> nn.Module:
    """Turn every :class:`Conv2d` of ``model`` (exactly that class, not subclasses such as
    ``WSConv2d``) into ``nn.Conv2d`` in place, weights kept; returns ``model``."""
    for module in model.modules():
        if type(module) is Conv2d:
            module.__class__ = nn.Conv2d
    return model


__all__ = ["Conv2d", "small_map_conv2d", "stock_convs", "tap_index"]
