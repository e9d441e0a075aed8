"""Batched, per-sample augmentation on the device.

Every operation takes a float batch ``x`` (B, C, H, W) with values in [0, 1] and an
explicit ``torch.Generator`` (on x's device) and draws one random parameter per sample
with tensor ops: no Python loop over samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_mask(batch: int, p: float, generator: torch.Generator, device=None) -> torch.Tensor:
    """(B,) bool: which samples to flip."""
    return torch.rand(batch, generator=generator, device=device) < p


def hflip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flip left-right exactly the rows where ``mask`` (B,) is true."""
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    return hflip(x, flip_mask(len(x), p, generator, x.device))


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int,
              mode: str = "constant") -> torch.Tensor:
    """Per-sample integer shift: the crop at offset (pad + dy, pad + dx) of the padded image.

    dy, dx: (B,) int in [-pad, pad]. Output pixel (i, j) = padded[i + pad + dy, j + pad + dx],
    so content moves by (-dy, -dx). Implemented as one gather over the padded batch.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)  # (B, C, H+2p, W+2p)
    rows = (torch.arange(h, device=x.device)[None, :] + (dy + pad)[:, None])  # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] + (dx + pad)[:, None])  # (B, W)
    wp = w + 2 * pad
    flat = rows[:, :, None] * wp + cols[:, None, :]  # (B, H, W) index into padded H*W plane
    out = padded.flatten(2).gather(2, flat.flatten(1)[:, None, :].expand(b, c, h * w))
    return out.view(b, c, h, w)


def random_crop(x: torch.Tensor, generator: torch.Generator, pad: int = 4,
                mode: str = "constant") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crop with ``pad`` pixels of padding; returns (x, dy, dx) with the drawn offsets."""
    b = len(x)
    dy = torch.randint(-pad, pad + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(-pad, pad + 1, (b,), generator=generator, device=x.device)
    return translate(x, dy, dx, pad, mode), dy, dx


class FlipCrop:
    """The classic CIFAR recipe: random crop with padding, then horizontal flip."""

    def __init__(self, pad: int = 4, flip_p: float = 0.5, mode: str = "constant"):
        self.pad, self.flip_p, self.mode = pad, flip_p, mode

    def __call__(self, x, y, generator):
        if self.pad:
            x = random_crop(x, generator, self.pad, self.mode)[0]
        if self.flip_p:
            x = random_hflip(x, generator, self.flip_p)
        return x, y

    def __repr__(self) -> str:
        return f"FlipCrop(pad={self.pad}, flip_p={self.flip_p}, mode={self.mode!r})"


def build_pipeline(spec, num_classes: int, image_size: int = 32):
    """Turn ``data.augment`` (a preset name or a list of op tables) into a callable
    ``(x, y, generator) -> (x, y)``, or None for no augmentation."""
    if spec in (None, "", "none", False):
        return None
    if spec == "flip-crop":
        return FlipCrop(pad=max(1, image_size // 8))
    if spec == "flip":
        return FlipCrop(pad=0)
    from cnnlab.errors import ConfigError

    raise ConfigError(f"data.augment = {spec!r} is not a known pipeline; try none, flip, flip-crop")
