"""RandAugment (Cubuk et al. 2020), batched: N ops drawn per sample at magnitude M of 30.

Each of the N layers draws, per sample, an op index from the standard list, a sign and
(optionally) a random magnitude.  Nothing loops over samples:

* the geometric choices (shear, translate, rotate) of all layers become one per-sample
  affine map, so a pipeline fuses them with the crop and flip before into a single
  resampling; as a consequence a sample's geometric ops act before its colour ops
  (the only difference from applying the N ops strictly in order);
* for the colour choices, each layer sorts the batch by op index and applies every op
  once to the contiguous group of samples that chose it.

The list and its magnitude scales follow torchvision's ``RandAugment`` (31 bins, 0..30):
shear up to 0.3, translation up to 150/331 of the side, rotation up to 30 degrees,
enhancement factors 1 +- 0.9, posterize 8 down to 4 bits, solarize threshold 1 down to 0.
Each op class declares its entries (``randaugment`` in ``geometry`` and ``color``); the
list is read from the op registry in torchvision's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from cnnlab.data.augment.augbase import (
    check_number,
    check_probability,
    randaugment_ops,
    register_op,
    signs,
    uniform,
)
from cnnlab.data.augment.geometry import GeometricOp, canonical_padding
from cnnlab.errors import ConfigError, did_you_mean

MAX_LEVEL = 30  # the standard magnitude scale 0..30


def _color(name: str, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """A colour op on ``x`` (b, C, H, W) at signed level (b,) in [-1, 1] of its maximum."""
    op = randaugment_ops()[name]
    return x if op.apply is None else op.apply(x, level)  # identity: as it is


@register_op
class RandAugment(GeometricOp):
    """RandAugment(n, m): ``n`` ops per sample from ``ops`` (the standard 14 by default,
    see :func:`~cnnlab.data.augment.augbase.randaugment_ops`) at magnitude ``m`` in 0..30;
    with ``random_magnitude`` each draw uses a magnitude uniform in [0, m]; with ``m_std``
    > 0 a magnitude drawn per sample and layer from N(m, m_std^2), clipped to [0, 30]
    (timm's ``mstd``, on its 0..10 scale: timm's rand-m7-mstd0.5 is m = 21, m_std = 1.5
    here). Each chosen op is applied with probability ``p``.
    """

    name = "randaugment"
    kind = "compound"
    aliases = ("rand_augment",)
    params = ("n", "m", "m_std", "random_magnitude", "ops", "padding", "fill", "p")
    magnitude_param = "m"
    has_remainder: ClassVar[bool] = True

    def __init__(self, n: int = 2, m: float = 9, random_magnitude: bool = False,
                 ops: Sequence[str] | None = None, padding: str = "zeros", fill: float = 0.0,
                 p: float = 1.0, m_std: float = 0.0):
        self.p = check_probability(self.name, "p", p)
        self.n = check_number(self.name, "n", n, 0, 16, integer=True)
        self.m = check_number(self.name, "m", m, 0, MAX_LEVEL)
        if not isinstance(random_magnitude, bool):
            raise ConfigError(f"augment op '{self.name}': random_magnitude must be true or "
                              f"false, got {random_magnitude!r}")
        self.random_magnitude = random_magnitude
        self.m_std = check_number(self.name, "m_std", m_std, 0, MAX_LEVEL)
        if self.m_std and random_magnitude:
            raise ConfigError(f"augment op '{self.name}': m_std (magnitude noise around m) "
                              f"and random_magnitude (uniform in [0, m]) exclude each other")
        standard = randaugment_ops()
        ops = list(standard if ops is None else ops)
        for op in ops:
            if not isinstance(op, str) or op not in standard:
                raise ConfigError(f"augment op '{self.name}': unknown op {op!r} in ops"
                                  f"{did_you_mean(op, standard)}; "
                                  f"allowed: {', '.join(standard)}")
        if not ops:
            raise ConfigError(f"augment op '{self.name}': ops must name at least one op")
        self.ops = ops
        self._chosen = [standard[op] for op in ops]  # what each drawn index stands for
        self.padding = canonical_padding(padding, self.name)
        self.fill = check_number(self.name, "fill", fill, 0, 1)

    @property
    def fusable(self) -> bool:
        """Whether any op in the list is geometric (else there is nothing to resample)."""
        return any(op.matrix is not None for op in self._chosen)

    def config(self):
        cfg = super().config()
        if self.ops == list(randaugment_ops()):
            cfg.pop("ops")
        if not self.m_std:
            cfg.pop("m_std")
        return cfg

    def sample(self, shape, generator, device):
        b = shape[0]
        layers = []
        for _ in range(self.n):
            choice = torch.randint(0, len(self.ops), (b,), generator=generator, device=device)
            if self.p < 1:  # -1: this layer leaves the sample alone
                skip = torch.rand(b, generator=generator, device=device) >= self.p
                choice = torch.where(skip, torch.full_like(choice, -1), choice)
            if self.random_magnitude:
                mag = uniform(b, 0, self.m, generator, device)
            elif self.m_std:  # (b,) around m; no draw at all when m_std = 0 (as before)
                noise = torch.randn(b, generator=generator, device=device)
                mag = (self.m + self.m_std * noise).clamp_(0, MAX_LEVEL)
            else:
                mag = torch.full((b,), float(self.m), device=device)
            level = mag / MAX_LEVEL * signs(b, generator, device)  # signed, in [-1, 1]
            layers.append((choice, level))
        return {"layers": layers, "device": device}

    def matrix(self, params, shape):
        b, _, h, w = shape
        geometric = [(k, op) for k, op in enumerate(self._chosen) if op.matrix is not None]
        eye = torch.eye(3, device=params["device"]).expand(b, 3, 3)
        total = eye
        for c, lv in params["layers"]:
            # one op per sample and layer: each sample takes the map of the op it chose,
            # the identity where it chose a colour op (or none)
            m = eye
            for k, op in geometric:
                m = torch.where((c == k)[:, None, None], op.matrix(lv, h, w), m)
            total = total @ m  # earlier layers act first: M_1 @ M_2 @ ...
        return total

    def remainder(self, x, y, params):
        """The colour choices, written into ``x`` in place: x is the fresh output of the
        resampling (``apply`` passes a copy when there is no resampling)."""
        colour = [k for k, op in enumerate(self._chosen) if op.apply is not None]
        if not colour or not params["layers"]:
            return x, y
        for choice, level in params["layers"]:
            # sort the batch by op index; every op then runs once on its group of samples
            order = torch.argsort(choice, stable=True)
            counts = torch.bincount(choice + 1, minlength=len(self.ops) + 1).tolist()
            start = counts[0]  # the skipped samples (-1) sort first
            for k, op in enumerate(self._chosen):
                idx = order[start:start + counts[k + 1]]
                start += counts[k + 1]
                if k in colour and len(idx):
                    # index_select / index_copy_: row copies, far cheaper than x[idx] on CPU
                    part = op.apply(x.index_select(0, idx), level.index_select(0, idx))
                    x.index_copy_(0, idx, part)
        return x, y

    def apply(self, x, y, params):
        if self.fusable:
            return super().apply(x, y, params)
        return self.remainder(x.clone(), y, params)
