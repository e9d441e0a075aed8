"""Pixel-value augmentation: colour, tone, the RandAugment vocabulary, erasing and noise.

Functions take a float batch ``x`` (B, C, H, W) in [0, 1] and per-sample parameters as
(B,) tensors (or one float for the whole batch) and return a new batch in [0, 1].
They follow Pillow / torchvision definitions (cited per function).  On one-channel
(grayscale) batches the ops that need colour degrade sensibly: saturation, hue and
grayscale leave the image as it is; contrast uses the single channel as luma.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from cnnlab.data.augment.augbase import (
    Op,
    RandAugmentOp,
    apply_mask,
    check_number,
    check_range,
    per_sample,
    register_op,
    select,
    uniform,
    where_mask,
)

# ITU-R 601-2 luma, as Pillow's convert("L") and torchvision's rgb_to_grayscale
_LUMA = (0.299, 0.587, 0.114)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of ``x``: 601-2 weights for RGB, the channel itself for C = 1."""
    c = x.shape[1]
    if c == 1:
        return x
    if c == 3:
        r, g, b = x.unbind(1)
        return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)
    return x.mean(1, keepdim=True)


def blend(x: torch.Tensor, degenerate: torch.Tensor, factor) -> torch.Tensor:
    """``degenerate + factor * (x - degenerate)`` clamped to [0, 1] (Pillow's ImageEnhance).

    ``factor`` 0 gives the degenerate image, 1 the original, > 1 extrapolates.
    """
    f = per_sample(factor)
    if not isinstance(f, torch.Tensor):
        f = torch.tensor(float(f), device=x.device, dtype=x.dtype)
    return torch.lerp(degenerate.expand_as(x), x, f.to(x.dtype)).clamp_(0, 1)


def grayscale(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Replace the flagged samples (all if ``mask`` is None) by their luma in every channel."""
    if x.shape[1] == 1:
        return x
    return where_mask(mask, to_grayscale(x).expand_as(x), x)


def brightness(x: torch.Tensor, factor) -> torch.Tensor:
    """Scale intensities by ``factor`` (B,): blend with black."""
    return (x * per_sample(factor)).clamp_(0, 1)


def contrast(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the sample's mean luma (a flat grey image) by ``factor`` (B,)."""
    # the mean of the luma is the luma of the per-channel means: no grey image needed
    mean = to_grayscale(x.mean((2, 3), keepdim=True)).mean(1, keepdim=True)  # (B, 1, 1, 1)
    return blend(x, mean, factor)


def saturation(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the sample's grayscale version by ``factor`` (B,); C = 1: unchanged."""
    if x.shape[1] == 1:
        return x
    return blend(x, to_grayscale(x), factor)


def hue(x: torch.Tensor, shift) -> torch.Tensor:
    """Rotate the hue by ``shift`` (B,) turns in [-0.5, 0.5], keeping HSV saturation and
    value (as torchvision's adjust_hue).  Needs three channels; others are unchanged.

    With V = max, D = max - min and the hue H' in sextants [0, 6), the RGB of (H', S, V)
    is V - D * clamp(min(k, 4 - k), 0, 1) with k = (n + H') mod 6 and n = 5, 3, 1 for
    R, G, B; a hue shift leaves V and D alone, so no full HSV round trip is needed.
    """
    if x.shape[1] != 3:
        return x
    v, top = x.max(1, keepdim=True)  # (B, 1, H, W): value and its channel (R first on ties)
    delta = v - x.amin(1, keepdim=True)
    # H' = 2 * top + (next channel - previous channel) / D, e.g. (G - B) / D for R on top
    nxt = x.gather(1, (top + 1) % 3)
    prv = x.gather(1, (top + 2) % 3)
    h6 = (nxt - prv).div_(delta.clamp_min(1e-12)).add_(2 * top).add_(6 * per_sample(shift))
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (h6 + n).remainder_(6)  # (B, 3, H, W)
    w = torch.minimum(k, 4 - k).clamp_(0, 1)
    return (v - delta * w).clamp_(0, 1)


def invert(x: torch.Tensor) -> torch.Tensor:
    """``1 - x``."""
    return 1 - x


def solarize(x: torch.Tensor, threshold) -> torch.Tensor:
    """Invert the pixels at or above ``threshold`` (B,) in [0, 1] (Pillow's ImageOps.solarize)."""
    # |m - x| with m = 1 above the threshold, 0 below: 1 - x or x, exactly, without where
    return (x >= per_sample(threshold)).to(x.dtype).sub_(x).abs_()


def _to_levels(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit levels 0..255 of ``x`` as float (exact for images decoded from uint8)."""
    return (x * 255).round_().clamp_(0, 255)


def posterize(x: torch.Tensor, bits) -> torch.Tensor:
    """Keep the top ``bits`` (B,) of each 8-bit level: ``level & (0xFF << (8 - bits))``."""
    if isinstance(bits, torch.Tensor):
        step = torch.pow(2.0, 8 - bits.to(x.dtype)).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    else:
        step = float(2 ** (8 - int(bits)))
    return (_to_levels(x) / step).floor_().mul_(step).div_(255)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram-equalize every channel of every sample (Pillow's ImageOps.equalize).

    Batched: one 256-bin histogram per (sample, channel) by ``scatter_add``, the exclusive
    cumulative sum gives Pillow's lookup table, one ``gather`` applies it.  Counts stay
    below 2^24, so float32 holds them and their integer arithmetic exactly.
    """
    b, c, h, w = x.shape
    levels = _to_levels(x).reshape(b * c, h * w)  # (BC, HW) levels 0..255; x may be NHWC
    index = levels.long()
    hist = torch.zeros(b * c, 256, dtype=x.dtype, device=x.device)
    hist.scatter_add_(1, index, torch.ones((), dtype=x.dtype, device=x.device).expand_as(levels))
    # Pillow: step = (pixels - count of the highest level present) // 255
    last = hist.gather(1, index.max(1, keepdim=True).values)  # (BC, 1)
    step = torch.div(h * w - last, 255, rounding_mode="floor")
    cum = hist.cumsum(1) - hist  # pixels below each level
    half = torch.div(step, 2, rounding_mode="floor")
    lut = torch.div(cum + half, step.clamp(min=1), rounding_mode="floor").clamp_(max=255)
    lut = torch.where(step > 0, lut, torch.arange(256, dtype=x.dtype, device=x.device))
    return lut.gather(1, index).view(b, c, h, w).div_(255)  # step 0: identity table


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each sample to the full [0, 1] range (no cut-off)."""
    lo = x.amin((2, 3), keepdim=True)  # (B, C, 1, 1)
    hi = x.amax((2, 3), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 1 / (hi - lo).clamp_min(1e-12))
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    return ((x - lo) * scale).clamp_(0, 1)


def sharpness(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with Pillow's SMOOTH-filtered image by ``factor`` (B,); > 1 sharpens.

    SMOOTH is the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, i.e. (the 3x3 sum +
    4 x the centre) / 13; as Pillow and torchvision, the one-pixel border keeps its
    original values.
    """
    h, w = x.shape[-2:]
    if h < 3 or w < 3:
        return x
    # separable 3x3 box sum from shifted slices: far cheaper on CPU than avg_pool2d/conv2d
    rows = x[..., :-2] + x[..., 1:-1] + x[..., 2:]  # (B, C, H, W-2)
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]  # (B, C, H-2, W-2)
    inner = x[..., 1:-1, 1:-1]
    smooth = box.add_(inner, alpha=4).div_(13)
    out = x.clone()
    out[..., 1:-1, 1:-1] = blend(inner, smooth, factor)
    return out


def box_mask(y0: torch.Tensor, x0: torch.Tensor, y1: torch.Tensor, x1: torch.Tensor,
             h: int, w: int) -> torch.Tensor:
    """(B, 1, H, W) bool: pixels inside the per-sample boxes [y0, y1) x [x0, x1) (B,)."""
    dev = y0.device
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    in_rows = (rows >= y0.view(-1, 1, 1)) & (rows < y1.view(-1, 1, 1))  # (B, H, 1)
    in_cols = (cols >= x0.view(-1, 1, 1)) & (cols < x1.view(-1, 1, 1))  # (B, 1, W)
    return (in_rows & in_cols).unsqueeze(1)  # one full-size pass


def erase(x: torch.Tensor, y0, x0, y1, x1, value: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Fill the per-sample boxes [y0, y1) x [x0, x1) with ``value`` (a float or a tensor
    broadcastable to ``x``, e.g. noise)."""
    inside = box_mask(y0, x0, y1, x1, x.shape[2], x.shape[3])  # (B, 1, H, W)
    if not isinstance(value, torch.Tensor):
        value = torch.tensor(float(value), device=x.device, dtype=x.dtype)
    return select(inside, value.expand_as(x), x)


def gaussian_noise(x: torch.Tensor, std, generator: torch.Generator) -> torch.Tensor:
    """Add N(0, std^2) noise per pixel (``std`` (B,) or a float), clamped to [0, 1]."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise * per_sample(std)).clamp_(0, 1)


# -- thin configurable objects ----------------------------------------------------------

def _factor_range(op: str, key: str, value: Any) -> tuple[float, float]:
    """A number m means factors in [max(0, 1 - m), 1 + m]; a pair is taken as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        m = check_number(op, key, value, 0, 10)
        return (max(0.0, 1 - m), 1 + m)
    return check_range(op, key, value, 0, 11)


def _enhance(name: str, index: int, fn: Callable) -> RandAugmentOp:
    """RandAugment's enhancement ``name``: factor 1 +- 0.9 at full magnitude (torchvision)."""
    return RandAugmentOp(name, index, apply=lambda x, level: fn(x, 1 + 0.9 * level))


class _FactorOp(Op):
    """An enhancement with a factor drawn per sample uniformly from ``magnitude``."""

    params = ("magnitude", "p")
    magnitude_param = "magnitude"
    fn: ClassVar[Any] = None

    def __init__(self, magnitude: float | tuple[float, float] = 0.4, p: float = 1.0):
        super().__init__(p)
        self.magnitude = _factor_range(self.name, "magnitude", magnitude)

    def sample(self, shape, generator, device):
        mask = apply_mask(shape[0], self.p, generator, device)
        return {"mask": mask, "factor": uniform(shape[0], *self.magnitude, generator, device)}

    def apply(self, x, y, params):
        return where_mask(params["mask"], type(self).fn(x, params["factor"]), x), y


class _PlainOp(Op):
    """An op without a random parameter besides its probability."""

    fn: ClassVar[Any] = None

    def apply(self, x, y, params):
        return where_mask(params["mask"], type(self).fn(x), x), y


@register_op
class Brightness(_FactorOp):
    """Brightness factor uniform in [1 - m, 1 + m] (or a [low, high] range) per sample."""

    name = "brightness"
    fn = staticmethod(brightness)
    randaugment = (_enhance("brightness", 6, brightness),)


@register_op
class Contrast(_FactorOp):
    """Contrast factor uniform in [1 - m, 1 + m] (or a [low, high] range) per sample."""

    name = "contrast"
    fn = staticmethod(contrast)
    randaugment = (_enhance("contrast", 8, contrast),)


@register_op
class Saturation(_FactorOp):
    """Saturation factor uniform in [1 - m, 1 + m] per sample; no-op on grayscale."""

    name = "saturation"
    fn = staticmethod(saturation)
    randaugment = (_enhance("color", 7, saturation),)  # PIL calls saturation "color"


@register_op
class Hue(Op):
    """Hue rotation uniform in [-m, m] turns (m <= 0.5) per sample; no-op on grayscale."""

    name = "hue"
    params = ("magnitude", "p")
    magnitude_param = "magnitude"

    def __init__(self, magnitude: float = 0.1, p: float = 1.0):
        super().__init__(p)
        self.magnitude = check_number(self.name, "magnitude", magnitude, 0, 0.5)

    def sample(self, shape, generator, device):
        mask = apply_mask(shape[0], self.p, generator, device)
        m = self.magnitude
        return {"mask": mask, "shift": uniform(shape[0], -m, m, generator, device)}

    def apply(self, x, y, params):
        return where_mask(params["mask"], hue(x, params["shift"]), x), y


@register_op
class ColorJitter(Op):
    """Brightness, contrast, saturation and hue jitter (in that order), factors per sample."""

    name = "color_jitter"
    params = ("brightness", "contrast", "saturation", "hue", "p")
    magnitude_param = None
    aliases = ("jitter",)

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.0, p: float = 1.0):
        super().__init__(p)
        self.parts = [Brightness(brightness), Contrast(contrast), Saturation(saturation)]
        self.parts += [Hue(hue)] if hue else []
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.hue = hue

    def sample(self, shape, generator, device):
        mask = apply_mask(shape[0], self.p, generator, device)
        return {"mask": mask, "parts": [op.sample(shape, generator, device) for op in self.parts]}

    def apply(self, x, y, params):
        out = x
        for op, p in zip(self.parts, params["parts"]):
            out = op.apply(out, y, p)[0]
        return where_mask(params["mask"], out, x), y


@register_op
class Grayscale(Op):
    """Convert to grayscale (kept as C channels) with probability ``p`` per sample."""

    name = "grayscale"
    aliases = ("gray", "greyscale")

    def __init__(self, p: float = 0.2):
        super().__init__(p)

    def sample(self, shape, generator, device):
        # always draw, so that p = 1 still flags every sample explicitly
        return {"mask": torch.rand(shape[0], generator=generator, device=device) < self.p}

    def apply(self, x, y, params):
        return grayscale(x, params["mask"]), y


@register_op
class Solarize(Op):
    """Invert the pixels at or above ``threshold`` in [0, 1], with probability ``p``."""

    name = "solarize"
    params = ("threshold", "p")
    magnitude_param = "threshold"
    # RandAugment: threshold 1 at level 0 down to 0 at full magnitude (unsigned)
    randaugment = (RandAugmentOp("solarize", 11, apply=lambda x, level: solarize(
        x, 1 - level.abs())),)

    def __init__(self, threshold: float = 0.5, p: float = 1.0):
        super().__init__(p)
        self.threshold = check_number(self.name, "threshold", threshold, 0, 1)

    def apply(self, x, y, params):
        return where_mask(params["mask"], solarize(x, self.threshold), x), y


@register_op
class Posterize(Op):
    """Keep the top ``bits`` (1..8) of each 8-bit level, with probability ``p``."""

    name = "posterize"
    params = ("bits", "p")
    magnitude_param = "bits"
    # RandAugment: 8 bits at level 0 down to 4 at full magnitude (unsigned)
    randaugment = (RandAugmentOp("posterize", 10, apply=lambda x, level: posterize(
        x, 8 - (level.abs() * 4).round().long())),)

    def __init__(self, bits: int = 4, p: float = 1.0):
        super().__init__(p)
        self.bits = check_number(self.name, "bits", bits, 1, 8, integer=True)

    def apply(self, x, y, params):
        return where_mask(params["mask"], posterize(x, self.bits), x), y


@register_op
class Equalize(_PlainOp):
    """Histogram equalization with probability ``p`` per sample."""

    name = "equalize"
    aliases = ("histogram_equalization", "histogram_equalisation")
    fn = staticmethod(equalize)
    randaugment = (RandAugmentOp("equalize", 13, apply=lambda x, level: equalize(x)),)


@register_op
class AutoContrast(_PlainOp):
    """Autocontrast (stretch to [0, 1] per channel) with probability ``p`` per sample."""

    name = "autocontrast"
    fn = staticmethod(autocontrast)
    aliases = ("auto_contrast",)
    randaugment = (RandAugmentOp("autocontrast", 12, apply=lambda x, level: autocontrast(x)),)


@register_op
class Sharpness(_FactorOp):
    """Sharpness factor uniform in [1 - m, 1 + m] per sample."""

    name = "sharpness"
    fn = staticmethod(sharpness)
    randaugment = (_enhance("sharpness", 9, sharpness),)


@register_op
class Invert(_PlainOp):
    """Invert (``1 - x``) with probability ``p`` per sample."""

    name = "invert"
    fn = staticmethod(invert)


@register_op
class Cutout(Op):
    """Cutout (DeVries & Taylor 2017): a square of side ``size`` x the shorter image side,
    centred uniformly anywhere in the image (so it may be clipped), filled with ``fill``."""

    name = "cutout"
    params = ("size", "fill", "p")
    magnitude_param = "size"

    def __init__(self, size: float = 0.5, fill: float = 0.0, p: float = 1.0):
        super().__init__(p)
        self.size = check_number(self.name, "size", size, 0, 1)
        self.fill = check_number(self.name, "fill", fill, 0, 1)

    def sample(self, shape, generator, device):
        b, _, h, w = shape
        mask = apply_mask(b, self.p, generator, device)
        side = round(self.size * min(h, w))
        cy = torch.randint(0, h, (b,), generator=generator, device=device)
        cx = torch.randint(0, w, (b,), generator=generator, device=device)
        y0, x0 = cy - side // 2, cx - side // 2
        return {"mask": mask, "box": (y0, x0, y0 + side, x0 + side)}

    def apply(self, x, y, params):
        return where_mask(params["mask"], erase(x, *params["box"], self.fill), x), y


@register_op
class RandomErasing(Op):
    """Random erasing (Zhong et al. 2020): a box of ``scale`` x the image area and aspect
    ratio log-uniform in ``ratio``, inside the image, filled with ``fill`` (a value in
    [0, 1] or "random" for uniform noise)."""

    name = "random_erasing"
    params = ("scale", "ratio", "fill", "p")
    magnitude_param = "scale"
    aliases = ("erase", "erasing")

    def __init__(self, scale: tuple[float, float] = (0.02, 0.33),
                 ratio: tuple[float, float] = (0.3, 3.3), fill: float | str = 0.0,
                 p: float = 0.5):
        super().__init__(p)
        if isinstance(scale, int | float) and not isinstance(scale, bool):
            scale = (0.02, check_number(self.name, "scale", scale, 0.02, 1))
        self.scale = check_range(self.name, "scale", scale, 0, 1)
        self.ratio = check_range(self.name, "ratio", ratio, 1e-2, 1e2)
        if fill != "random":
            fill = check_number(self.name, "fill", fill, 0, 1)
        self.fill = fill

    def sample(self, shape, generator, device):
        b, c, h, w = shape
        mask = apply_mask(b, self.p, generator, device)
        area = uniform(b, *self.scale, generator, device) * (h * w)
        r = uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), generator, device).exp()
        bh = (area / r).sqrt().round().clamp(1, h).long()
        bw = (area * r).sqrt().round().clamp(1, w).long()
        y0 = (uniform(b, 0, 1, generator, device) * (h - bh + 1)).long()
        x0 = (uniform(b, 0, 1, generator, device) * (w - bw + 1)).long()
        params = {"mask": mask, "box": (y0, x0, y0 + bh, x0 + bw)}
        if self.fill == "random":
            params["noise"] = torch.rand(shape, generator=generator, device=device)
        return params

    def apply(self, x, y, params):
        value = params["noise"].to(x.dtype) if self.fill == "random" else self.fill
        return where_mask(params["mask"], erase(x, *params["box"], value), x), y


@register_op
class GaussianNoise(Op):
    """Additive Gaussian noise of standard deviation ``std`` (in [0, 1] units)."""

    name = "noise"
    params = ("std", "p")
    magnitude_param = "std"
    aliases = ("gaussian_noise",)

    def __init__(self, std: float = 0.05, p: float = 1.0):
        super().__init__(p)
        self.std = check_number(self.name, "std", std, 0, 1)

    def sample(self, shape, generator, device):
        mask = apply_mask(shape[0], self.p, generator, device)
        return {"mask": mask,
                "noise": torch.randn(shape, generator=generator, device=device) * self.std}

    def apply(self, x, y, params):
        return where_mask(params["mask"], (x + params["noise"]).clamp_(0, 1), x), y
