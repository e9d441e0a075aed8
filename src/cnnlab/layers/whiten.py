"""Patch-whitening convolution: a first layer whose filters whiten the input's k x k patches.

The filters come from the training data, not from gradient descent (Page 2018, "How to
train your ResNet"; Jordan 2024, arXiv 2404.00498, section 3.2): with the covariance
``S = E[p p^T]`` of the flattened (C*k*k,) patches ``p`` and its eigendecomposition
``S = V diag(l) V^T``, the filter ``v_i / sqrt(l_i + eps)`` maps a patch to its i-th
whitened coordinate, so the layer's outputs have (nearly) identity covariance on the
patches it was fitted to. ``PatchWhitening`` also keeps each filter's negative (2x the
channels), so that a following GELU/ReLU sees both signs of every coordinate.

The weights are frozen (``requires_grad = False``); the bias trains like any parameter
(a trainer may freeze it after a few epochs: ``train.whiten_bias_epochs``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def image_patches(images: torch.Tensor, kernel: int) -> torch.Tensor:
    """All ``kernel x kernel`` patches (stride 1, no padding) of ``images`` (N, C, H, W),
    flattened in conv-weight order: (N * (H-k+1) * (W-k+1), C * k * k), float32."""
    cols = F.unfold(images.float(), kernel)  # (N, C*k*k, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def whitening_filters(images: torch.Tensor, kernel: int = 2, eps: float = 5e-4
                      ) -> torch.Tensor:
    """The (C*k*k, C, k, k) filters that whiten ``images``' k x k patches: row i is the
    i-th eigenvector of the (uncentred) patch covariance over ``sqrt(eigenvalue + eps)``,
    largest eigenvalue first. ``eps`` (in squared input units) keeps directions of tiny
    variance from being blown up."""
    p = image_patches(images, kernel).double()  # (P, D): double for a stable eigh
    cov = p.T @ p / len(p)  # (D, D), uncentred: the layer has no mean subtraction but a bias
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)  # largest first
    filters = (evecs / torch.sqrt(evals.clamp_min(0) + eps)).T  # (D, D): row i = filter i
    c = images.shape[1]
    return filters.reshape(-1, c, kernel, kernel).float()


class PatchWhitening(nn.Conv2d):
    """(B, C, H, W) -> (B, 2*C*k*k, H-k+1, W-k+1): whitening filters and their negatives,
    frozen, plus a trainable bias. Call :meth:`init_from_data` with training images before
    training; until then the filters are the conv default (random)."""

    def __init__(self, in_chans: int = 3, kernel: int = 2, eps: float = 5e-4):
        width = 2 * in_chans * kernel * kernel
        super().__init__(in_chans, width, kernel, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)
        with torch.no_grad():
            self.bias.zero_()

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the filters from ``images`` (N, C, H, W), normalized as the model will see
        them; zero the bias."""
        w = whitening_filters(images.to(self.weight.device), self.kernel_size[0], self.eps)
        self.weight.copy_(torch.cat([w, -w]).to(self.weight.dtype))
        self.bias.zero_()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", eps={self.eps}, frozen weights"
