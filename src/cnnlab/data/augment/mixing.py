"""Sample mixing: MixUp, CutMix and the per-batch switch between them.

MixUp (Zhang et al. 2018) replaces sample i by ``lam_i x_i + (1 - lam_i) x_j`` and its
one-hot label likewise, with ``lam_i ~ Beta(alpha, alpha)`` and j a shuffled partner.
CutMix (Yun et al. 2019) pastes a box of the partner into x_i; the box has area
``(1 - lam_i) H W`` before clipping at the image border, and the label weight of the
partner is the *true* pasted fraction after clipping.  Both return soft targets
(B, K) float that the trainer's cross-entropy accepts (label smoothing composes there).

Beta draws go through the explicit generator (``torch.distributions`` cannot take one):
Gamma variates by Marsaglia & Tsang's method, vectorised over the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnlab.data.augment.augbase import (
    Op,
    apply_mask,
    check_number,
    check_probability,
    per_sample,
    register_op,
)
from cnnlab.data.augment.color import box_mask
from cnnlab.errors import ConfigError


def sample_gamma(shape: float, n: int, generator: torch.Generator,
                 device: torch.device | None = None, proposals: int = 8) -> torch.Tensor:
    """(n,) float64 Gamma(shape, 1) variates drawn through ``generator``.

    Marsaglia & Tsang (2000): for a >= 1 with d = a - 1/3, c = 1/sqrt(9d), propose
    v = (1 + c z)^3 with z ~ N(0, 1) and accept when log u < z^2/2 + d - d v + d log v.
    Each proposal is accepted with probability above 0.95, so ``proposals`` of them are
    drawn per sample at once and the first accepted one is kept: with 8 all fail with
    probability below 1e-10 (then d, near the mode, stands in), and nothing waits on the
    device.  For a < 1: Gamma(a) = Gamma(a + 1) * u^(1/a).
    """
    if shape <= 0:
        raise ValueError(f"gamma shape must be > 0, got {shape}")
    a = shape + 1 if shape < 1 else shape
    d = a - 1 / 3
    c = 1 / math.sqrt(9 * d)
    z = torch.randn(n, proposals, generator=generator, device=device, dtype=torch.float64)
    u = torch.rand(n, proposals, generator=generator, device=device, dtype=torch.float64)
    v = (1 + c * z) ** 3
    ok = (v > 0) & (u.log() < 0.5 * z * z + d - d * v + d * v.clamp_min(1e-300).log())
    first = ok.to(torch.uint8).argmax(1, keepdim=True)  # first accepted proposal
    out = torch.where(ok.any(1), d * v.gather(1, first).squeeze(1), torch.full_like(z[:, 0], d))
    if shape < 1:
        u1 = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        out = out * u1.pow(1 / shape)
    return out


def sample_beta(alpha: float, beta: float, n: int, generator: torch.Generator,
                device: torch.device | None = None) -> torch.Tensor:
    """(n,) float32 Beta(alpha, beta) variates drawn through ``generator``: X / (X + Y)."""
    gx = sample_gamma(alpha, n, generator, device)
    gy = sample_gamma(beta, n, generator, device)
    total = gx + gy
    lam = torch.where(total > 0, gx / total.clamp_min(1e-300), torch.full_like(gx, 0.5))
    return lam.float()


def soft_targets(y: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """(B, K) float targets: one-hot of int labels (B,), or soft targets passed through."""
    if y.ndim == 2:
        return y.float()
    if num_classes is None:
        raise ValueError("num_classes is needed to turn class indices into soft targets")
    return F.one_hot(y.long(), num_classes).float()


def mixup(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Convex combination with partners ``perm`` (B,): weights ``lam`` (B,) on the sample.

    ``y`` are soft targets (B, K); returns (mixed x, mixed y).
    """
    lam = lam.to(x.dtype)
    # index_select: several times faster than x[perm] on CPU; then mix into that fresh copy
    # in place: partner + lam (x - partner) = lam x + (1 - lam) x[perm]
    xm = x.index_select(0, perm).lerp_(x, per_sample(lam))
    ym = torch.lerp(y.index_select(0, perm), y, lam[:, None].to(y.dtype))
    return xm, ym


def cutmix_boxes(lam: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, h: int, w: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes (y0, x0, y1, x1), each (B,) long, of side sqrt(1 - lam) x (H, W) centred at
    (cy, cx) and clipped to the image."""
    r = (1 - lam).clamp(0, 1).sqrt()
    bh, bw = (r * h).long(), (r * w).long()
    y0, x0 = cy - bh // 2, cx - bw // 2
    y1, x1 = y0 + bh, x0 + bw
    return y0.clamp(0, h), x0.clamp(0, w), y1.clamp(0, h), x1.clamp(0, w)


def cutmix(x: torch.Tensor, y: torch.Tensor, box: tuple[torch.Tensor, ...], perm: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste each partner's box (y0, x0, y1, x1) (B,) into x (B, C, H, W).

    Returns (x, y, lam) where lam (B,) = 1 - pasted area / image area is the label
    weight kept by the sample itself.
    """
    h, w = x.shape[-2:]
    y0, x0, y1, x1 = box
    outside = ~box_mask(y0, x0, y1, x1, h, w)  # (B, 1, H, W)
    # the partner's pixels inside the box, x's outside: an exact 0/1 lerp into the copy
    xm = x.index_select(0, perm).lerp_(x, outside.to(x.dtype))
    lam = 1 - ((y1 - y0) * (x1 - x0)).to(y.dtype) / (h * w)  # true kept fraction
    ym = torch.lerp(y.index_select(0, perm), y, lam[:, None])
    return xm, ym, lam


# -- thin configurable objects ----------------------------------------------------------

class _MixOp(Op):
    kind = "mix"
    needs_num_classes = True

    def __init__(self, p: float, num_classes: int | None):
        super().__init__(p)
        self.num_classes = num_classes

    def _alpha(self, key: str, value: float) -> float:
        a = check_number(self.name, key, value, 0)
        if a <= 0:
            raise ConfigError(f"augment op '{self.name}': {key} must be > 0, got {value!r}")
        return a

    def _lam(self, alpha: float, shape, generator, device, mask) -> torch.Tensor:
        lam = sample_beta(alpha, alpha, shape[0], generator, device)
        return lam if mask is None else torch.where(mask, lam, torch.ones_like(lam))

    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        return soft_targets(y, self.num_classes)


class _BetaMixOp(_MixOp):
    """A mix with one ``alpha``: lam ~ Beta(alpha, alpha) per sample (MixUp, CutMix)."""

    params = ("alpha", "p")
    magnitude_param = "alpha"

    def __init__(self, alpha: float = 1.0, p: float = 1.0, num_classes: int | None = None):
        super().__init__(p, num_classes)
        self.alpha = self._alpha("alpha", alpha)


@register_op
class MixUp(_BetaMixOp):
    """MixUp with ``lam ~ Beta(alpha, alpha)`` per sample; a sample is mixed with
    probability ``p`` (else lam = 1).  Returns soft targets (B, K)."""

    name = "mixup"
    def sample(self, shape, generator, device):
        mask = apply_mask(shape[0], self.p, generator, device)
        lam = self._lam(self.alpha, shape, generator, device, mask)
        perm = torch.randperm(shape[0], generator=generator, device=device)
        return {"mask": mask, "lam": lam, "perm": perm}

    def apply(self, x, y, params):
        return mixup(x, self._targets(y), params["lam"], params["perm"])


@register_op
class CutMix(_BetaMixOp):
    """CutMix with box area ``(1 - lam) H W``, ``lam ~ Beta(alpha, alpha)`` per sample; the
    label weight is the true pasted fraction after clipping.  Returns soft targets."""

    name = "cutmix"
    def sample(self, shape, generator, device):
        b, _, h, w = shape
        mask = apply_mask(b, self.p, generator, device)
        lam = self._lam(self.alpha, shape, generator, device, mask)
        perm = torch.randperm(b, generator=generator, device=device)
        cy = torch.randint(0, h, (b,), generator=generator, device=device)
        cx = torch.randint(0, w, (b,), generator=generator, device=device)
        return {"mask": mask, "perm": perm, "box": cutmix_boxes(lam, cy, cx, h, w)}

    def apply(self, x, y, params):
        xm, ym, _ = cutmix(x, self._targets(y), params["box"], params["perm"])
        return xm, ym


@register_op
class MixUpCutMix(_MixOp):
    """Per batch, CutMix with probability ``switch_prob``, else MixUp (the timm/DeiT recipe).

    Each sample is mixed with probability ``p``; lam is drawn per sample.
    """

    name = "mixup_cutmix"
    aliases = ("mix", "cutmix_mixup")
    params = ("mixup_alpha", "cutmix_alpha", "switch_prob", "p")
    magnitude_param = None

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5, p: float = 1.0, num_classes: int | None = None):
        super().__init__(p, num_classes)
        self.mixup_alpha = self._alpha("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = self._alpha("cutmix_alpha", cutmix_alpha)
        self.switch_prob = check_probability(self.name, "switch_prob", switch_prob)
        self._mixup = MixUp(self.mixup_alpha, p, num_classes)
        self._cutmix = CutMix(self.cutmix_alpha, p, num_classes)

    def sample(self, shape, generator, device):
        # the switch costs one host sync per batch (a Python branch on a drawn value)
        use_cutmix = bool(torch.rand(1, generator=generator, device=device).item()
                          < self.switch_prob)
        op = self._cutmix if use_cutmix else self._mixup
        return {"cutmix": use_cutmix, **op.sample(shape, generator, device)}

    def apply(self, x, y, params):
        return (self._cutmix if params["cutmix"] else self._mixup).apply(x, y, params)
