"""RandAugment (Cubuk et al. 2020), batched: N ops drawn per sample at magnitude M of 30.

Each of the N layers draws, per sample, an op index from the standard list, a sign and
(optionally) a random magnitude.  Nothing loops over samples:

* the geometric choices (shear, translate, rotate) of all layers become one per-sample
  affine map, so a pipeline fuses them with the crop and flip before into a single
  resampling; as a consequence a sample's geometric ops act before its colour ops
  (the only difference from applying the N ops strictly in order);
* for the colour choices, each layer sorts the batch by op index and applies every op
  once to the contiguous group of samples that chose it.

Magnitude scales follow torchvision's ``RandAugment`` (31 bins, 0..30): shear up to
0.3, translation up to 150/331 of the side, rotation up to 30 degrees, enhancement
factors 1 +- 0.9, posterize 8 down to 4 bits, solarize threshold 1 down to 0.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import ClassVar

import torch

from cnnlab.data import color
from cnnlab.data.augbase import check_number, check_probability, signs, uniform
from cnnlab.data.geometry import GeometricOp, canonical_padding, rotation_matrix
from cnnlab.errors import ConfigError

MAX_LEVEL = 30  # the standard magnitude scale 0..30

STANDARD_OPS: tuple[str, ...] = (
    "identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate",
    "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
    "autocontrast", "equalize",
)
GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")


def _color(name: str, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """A colour op on ``x`` (b, C, H, W) at signed level (b,) in [-1, 1] of its maximum."""
    if name in ("brightness", "color", "contrast", "sharpness"):
        fn = {"brightness": color.brightness, "color": color.saturation,
              "contrast": color.contrast, "sharpness": color.sharpness}[name]
        return fn(x, 1 + 0.9 * level)
    mag = level.abs()  # unsigned ops
    if name == "posterize":
        return color.posterize(x, 8 - (mag * 4).round().long())
    if name == "solarize":
        return color.solarize(x, 1 - mag)
    if name == "autocontrast":
        return color.autocontrast(x)
    if name == "equalize":
        return color.equalize(x)
    return x  # identity


class RandAugment(GeometricOp):
    """RandAugment(n, m): ``n`` ops per sample from ``ops`` (the standard 14 by default)
    at magnitude ``m`` in 0..30; with ``random_magnitude`` each draw uses a magnitude
    uniform in [0, m].  Each chosen op is applied with probability ``p``.
    """

    name = "randaugment"
    params = ("n", "m", "random_magnitude", "ops", "padding", "fill", "p")
    magnitude_param = "m"
    has_remainder: ClassVar[bool] = True

    def __init__(self, n: int = 2, m: float = 9, random_magnitude: bool = False,
                 ops: Sequence[str] | None = None, padding: str = "zeros", fill: float = 0.0,
                 p: float = 1.0):
        self.p = check_probability(self.name, "p", p)
        self.n = check_number(self.name, "n", n, 0, 16, integer=True)
        self.m = check_number(self.name, "m", m, 0, MAX_LEVEL)
        if not isinstance(random_magnitude, bool):
            raise ConfigError(f"augment op '{self.name}': random_magnitude must be true or "
                              f"false, got {random_magnitude!r}")
        self.random_magnitude = random_magnitude
        ops = list(STANDARD_OPS if ops is None else ops)
        for op in ops:
            if op not in STANDARD_OPS:
                close = difflib.get_close_matches(str(op), STANDARD_OPS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"augment op '{self.name}': unknown op {op!r} in ops{hint}; "
                                  f"allowed: {', '.join(STANDARD_OPS)}")
        if not ops:
            raise ConfigError(f"augment op '{self.name}': ops must name at least one op")
        self.ops = ops
        self.padding = canonical_padding(padding, self.name)
        self.fill = check_number(self.name, "fill", fill, 0, 1)

    @property
    def fusable(self) -> bool:
        """Whether any op in the list is geometric (else there is nothing to resample)."""
        return any(name in GEOMETRIC for name in self.ops)

    def config(self):
        cfg = super().config()
        if self.ops == list(STANDARD_OPS):
            cfg.pop("ops")
        return cfg

    def sample(self, shape, generator, device):
        b = shape[0]
        layers = []
        for _ in range(self.n):
            choice = torch.randint(0, len(self.ops), (b,), generator=generator, device=device)
            if self.p < 1:  # -1: this layer leaves the sample alone
                skip = torch.rand(b, generator=generator, device=device) >= self.p
                choice = torch.where(skip, torch.full_like(choice, -1), choice)
            mag = (uniform(b, 0, self.m, generator, device) if self.random_magnitude
                   else torch.full((b,), float(self.m), device=device))
            level = mag / MAX_LEVEL * signs(b, generator, device)  # signed, in [-1, 1]
            layers.append((choice, level))
        return {"layers": layers, "device": device}

    def matrix(self, params, shape):
        b, _, h, w = shape
        ids = {name: k for k, name in enumerate(self.ops) if name in GEOMETRIC}

        def chosen(name: str, choice: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
            """(B,) level where the sample chose ``name`` in this layer, else 0."""
            if name not in ids:
                return torch.zeros_like(level)
            return level * (choice == ids[name]).to(level.dtype)

        total = torch.eye(3, device=params["device"]).expand(b, 3, 3)
        for c, lv in params["layers"]:
            # one op per sample and layer: the rotation is the identity where the sample
            # chose another op, and at most one of the shear / shift entries is non-zero
            m = rotation_matrix(30.0 * chosen("rotate", c, lv))
            m[:, 0, 1] += 0.3 * chosen("shear_x", c, lv)
            m[:, 1, 0] += 0.3 * chosen("shear_y", c, lv)
            m[:, 0, 2] -= 150 / 331 * w * chosen("translate_x", c, lv)  # content moves by +
            m[:, 1, 2] -= 150 / 331 * h * chosen("translate_y", c, lv)
            total = total @ m  # earlier layers act first: M_1 @ M_2 @ ...
        return total

    def remainder(self, x, y, params):
        """The colour choices, written into ``x`` in place: x is the fresh output of the
        resampling (``apply`` passes a copy when there is no resampling)."""
        colour = [k for k, name in enumerate(self.ops)
                  if name not in GEOMETRIC and name != "identity"]
        if not colour or not params["layers"]:
            return x, y
        for choice, level in params["layers"]:
            # sort the batch by op index; every op then runs once on its group of samples
            order = torch.argsort(choice, stable=True)
            counts = torch.bincount(choice + 1, minlength=len(self.ops) + 1).tolist()
            start = counts[0]  # the skipped samples (-1) sort first
            for k, name in enumerate(self.ops):
                idx = order[start:start + counts[k + 1]]
                start += counts[k + 1]
                if k in colour and len(idx):
                    # index_select / index_copy_: row copies, far cheaper than x[idx] on CPU
                    part = _color(name, x.index_select(0, idx), level.index_select(0, idx))
                    x.index_copy_(0, idx, part)
        return x, y

    def apply(self, x, y, params):
        if self.fusable:
            return super().apply(x, y, params)
        return self.remainder(x.clone(), y, params)
