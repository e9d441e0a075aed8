"""Geometric augmentation: flips, crops, translation, rotation, shear, scale, resized crop.

Every geometric op is a per-sample 2-D affine map.  Maps are (B, 3, 3) matrices in
*centred pixel coordinates* (origin at the image centre, x to the right, y down, one
unit per pixel) that send an output pixel to the input point it samples from (the
inverse map, as ``F.grid_sample`` wants it).  Applying op A then op B samples the input
at ``M_A @ M_B @ q``, so a chain of geometric ops is one matrix product and ONE
``grid_sample`` per batch (:func:`affine`).  A perspective skew (``distort.py``) is a
homography in the same coordinates and fuses the same way (``affine(projective=True)``).

Maps made of flips, integer shifts and multiples of 90 degrees are *integral*: with
nearest sampling they reproduce the pixels exactly (``rotate(x, 90)`` equals
``torch.rot90``).

Padding modes: ``zeros`` (fill value outside the image, 0 by default), ``reflect``
(mirror about the edge pixels, as ``F.pad(mode="reflect")``) and ``border`` (repeat the
edge pixels).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from cnnlab.data.augment.augbase import (
    Op,
    Params,
    RandAugmentOp,
    apply_mask,
    check_choice,
    check_number,
    check_range,
    register_op,
    uniform,
    where_mask,
)

PADDINGS = ("zeros", "reflect", "border")
_PADDING_ALIASES = {"constant": "zeros", "zero": "zeros", "edge": "border",
                    "replicate": "border", "reflection": "reflect"}
INTERPOLATIONS = ("bilinear", "nearest")


def canonical_padding(padding: str, op: str = "affine") -> str:
    """Map aliases (``constant``, ``edge``, ...) to ``zeros`` / ``reflect`` / ``border``."""
    padding = _PADDING_ALIASES.get(padding, padding)
    return check_choice(op, "padding", padding, PADDINGS)


# -- flips and integer crops (exact, no resampling) ---------------------------------------

def flip_mask(batch: int, p: float, generator: torch.Generator, device=None) -> torch.Tensor:
    """(B,) bool: which samples to flip."""
    return torch.rand(batch, generator=generator, device=device) < p


def hflip(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Flip left-right exactly the rows where ``mask`` (B,) is true (all rows if None)."""
    return where_mask(mask, x.flip(-1), x)


def vflip(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Flip upside-down exactly the rows where ``mask`` (B,) is true (all rows if None)."""
    return where_mask(mask, x.flip(-2), x)


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Flip each sample left-right with probability ``p``."""
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


# -- affine maps (B, 3, 3), output pixel -> input point, centred pixel coordinates --------

def identity_matrix(b: int, device: torch.device | None = None) -> torch.Tensor:
    """(B, 3, 3) identity maps."""
    return torch.eye(3, device=device).expand(b, 3, 3).clone()


def _from_rows(a, b_, c, d, e, f) -> torch.Tensor:
    """(B, 3, 3) float32 from the six entries of [[a, b, c], [d, e, f], [0, 0, 1]], each a
    (B,) tensor or a number."""
    ref = next(t for t in (a, b_, c, d, e, f) if isinstance(t, torch.Tensor))
    out = torch.zeros(len(ref), 9, device=ref.device)  # filled column by column:
    out[:, 8] = 1  # fewer allocations than stacking nine (B,) tensors
    for i, v in enumerate((a, b_, c, d, e, f)):
        if isinstance(v, torch.Tensor):
            out[:, i] = v
        elif v:
            out[:, i] = float(v)
    return out.view(-1, 3, 3)


def flip_matrix(hmask: torch.Tensor | None = None, vmask: torch.Tensor | None = None,
                b: int | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Maps that mirror left-right where ``hmask`` (B,) and upside-down where ``vmask``."""
    ref = hmask if hmask is not None else vmask
    n = len(ref) if ref is not None else b
    dev = ref.device if ref is not None else device
    ones = torch.ones(n, device=dev)
    sx = ones if hmask is None else 1 - 2 * hmask.float()
    sy = ones if vmask is None else 1 - 2 * vmask.float()
    return _from_rows(sx, 0, 0, 0, sy, 0)


def shift_matrix(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Maps that move the content by (tx, ty) pixels (right, down)."""
    return _from_rows(1, 0, -tx, 0, 1, -ty)


def rotation_matrix(degrees: torch.Tensor) -> torch.Tensor:
    """Maps that rotate the content counter-clockwise by ``degrees`` about the centre.

    Multiples of 90 degrees get exact 0 / +-1 entries, so nearest sampling reproduces
    ``torch.rot90`` bit for bit.
    """
    rad = degrees.double() * (math.pi / 180)

    def snapped(t: torch.Tensor) -> torch.Tensor:  # cos(90) = 6e-17 -> 0, as float32
        r = t.round()
        return torch.where((t - r).abs() < 1e-9, r, t).float()

    c, s = snapped(torch.cos(rad)), snapped(torch.sin(rad))
    # out (u, v) samples in (c u - s v, s u + c v): content turns counter-clockwise on screen
    return _from_rows(c, -s, 0, s, c, 0)


def shear_matrix(sx: torch.Tensor | float = 0.0, sy: torch.Tensor | float = 0.0
                 ) -> torch.Tensor:
    """Shear about the centre: out (u, v) samples (u + sx v, v + sy u) (as PIL's ShearX/Y).

    ``sx``, ``sy`` are shear factors (the tangent of the shear angle).
    """
    return _from_rows(1, sx, 0, sy, 1, 0)


def scale_matrix(sx: torch.Tensor, sy: torch.Tensor | None = None) -> torch.Tensor:
    """Zoom about the centre by ``sx`` (and ``sy``; isotropic when None); > 1 enlarges."""
    sy = sx if sy is None else sy
    return _from_rows(1 / sx, 0, 0, 0, 1 / sy, 0)


def box_matrix(cx: torch.Tensor, cy: torch.Tensor, bw: torch.Tensor, bh: torch.Tensor,
               h: int, w: int) -> torch.Tensor:
    """Maps that stretch the box (centre (cx, cy), size bw x bh, pixels) over the whole frame."""
    return _from_rows(bw / w, 0, cx, 0, bh / h, cy)


def _grid(m: torch.Tensor, h: int, w: int, align: bool) -> torch.Tensor:
    """Sampling grid (B, H, W, 2) in grid_sample's [-1, 1] units for pixel maps ``m``."""
    # centred pixel coordinates of the output pixel centres
    u = torch.arange(w, device=m.device, dtype=m.dtype) - (w - 1) / 2  # (W,)
    v = torch.arange(h, device=m.device, dtype=m.dtype) - (h - 1) / 2  # (H,)
    # pixel -> normalised: x / (W/2) with align_corners=False, x / ((W-1)/2) with True
    norm = torch.tensor([2 / max(w - align, 1), 2 / max(h - align, 1)], device=m.device,
                        dtype=m.dtype)
    mn = m[:, :2, :] * norm[:, None]  # (B, 2, 3)
    # separable: (a u) depends on the column only, (b v + c) on the row only, so one
    # broadcast add of a (B, 2, 1, W) and a (B, 2, H, 1) term writes the whole grid
    cols = mn[:, :, 0, None, None] * u  # (B, 2, 1, W)
    rows = mn[:, :, 1, None, None] * v[:, None] + mn[:, :, 2, None, None]  # (B, 2, H, 1)
    return (cols + rows).permute(0, 2, 3, 1)  # (B, H, W, 2) view: grid_sample takes strides


def _projective_grid(m: torch.Tensor, h: int, w: int, align: bool) -> torch.Tensor:
    """Sampling grid (B, H, W, 2) for homographies ``m`` (B, 3, 3): the input point of output
    pixel q is (m q)[:2] / (m q)[2]."""
    u = torch.arange(w, device=m.device, dtype=m.dtype) - (w - 1) / 2  # (W,)
    v = torch.arange(h, device=m.device, dtype=m.dtype) - (h - 1) / 2  # (H,)
    norm = torch.tensor([2 / max(w - align, 1), 2 / max(h - align, 1)], device=m.device,
                        dtype=m.dtype)
    mn = m[:, :2, :] * norm[:, None]  # (B, 2, 3): numerators in grid_sample units
    d = m[:, 2, :]  # (B, 3): the denominator's row
    # every row of m q is separable as in _grid: (.., 1, W) + (.., H, 1) broadcast adds
    num = mn[:, :, 0, None, None] * u + (mn[:, :, 1, None, None] * v[:, None]
                                         + mn[:, :, 2, None, None])  # (B, 2, H, W)
    den = d[:, 0, None, None] * u + (d[:, 1, None, None] * v[:, None] + d[:, 2, None, None])
    return num.div_(den[:, None]).permute(0, 2, 3, 1)  # (B, H, W, 2)


def sample_grid(x: torch.Tensor, grid: torch.Tensor, interpolation: str, padding: str,
                fill: float, align: bool) -> torch.Tensor:
    """``F.grid_sample`` of ``x`` at ``grid`` (B, H, W, 2) with cnnlab's padding names."""
    mode = {"zeros": "zeros", "reflect": "reflection", "border": "border"}[padding]
    if padding == "zeros" and fill:
        # grid_sample pads with 0: sample x - fill, then add fill back
        return F.grid_sample(x - fill, grid, interpolation, mode, align_corners=align) + fill
    return F.grid_sample(x, grid, interpolation, mode, align_corners=align)


def affine(x: torch.Tensor, matrix: torch.Tensor, interpolation: str = "bilinear",
           padding: str = "zeros", fill: float = 0.0, projective: bool = False) -> torch.Tensor:
    """Resample ``x`` (B, C, H, W) once through per-sample maps ``matrix`` (B, 3, 3).

    ``matrix`` sends output pixel (u, v, 1) to the input point it samples (centred pixel
    coordinates).  ``interpolation``: bilinear | nearest; ``padding``: zeros (with
    ``fill``), reflect (mirror about the edge pixels) or border.  ``projective``: the maps
    may be homographies (a last row other than [0, 0, 1], e.g. perspective skew).
    """
    padding = canonical_padding(padding)
    check_choice("affine", "interpolation", interpolation, INTERPOLATIONS)
    _, _, h, w = x.shape
    align = padding == "reflect"  # grid_sample reflects about the edge-pixel centres then
    grid = (_projective_grid if projective else _grid)(matrix.to(x.dtype), h, w, align)
    return sample_grid(x, grid, interpolation, padding, fill, align)


def rotate(x: torch.Tensor, degrees: torch.Tensor | float, interpolation: str = "bilinear",
           padding: str = "zeros", fill: float = 0.0) -> torch.Tensor:
    """Rotate each sample counter-clockwise by ``degrees`` (B,) about its centre."""
    degrees = _as_batch(degrees, x)
    return affine(x, rotation_matrix(degrees), interpolation, padding, fill)


def shift(x: torch.Tensor, tx: torch.Tensor | float, ty: torch.Tensor | float,
          interpolation: str = "nearest", padding: str = "zeros", fill: float = 0.0
          ) -> torch.Tensor:
    """Move each sample's content by (tx, ty) pixels (right, down); integers shift exactly."""
    return affine(x, shift_matrix(_as_batch(tx, x), _as_batch(ty, x)), interpolation,
                  padding, fill)


def shear(x: torch.Tensor, sx: torch.Tensor | float, sy: torch.Tensor | float = 0.0,
          interpolation: str = "bilinear", padding: str = "zeros", fill: float = 0.0
          ) -> torch.Tensor:
    """Shear each sample about its centre by factors ``sx``, ``sy`` (B,)."""
    return affine(x, shear_matrix(_as_batch(sx, x), _as_batch(sy, x)), interpolation,
                  padding, fill)


def scale(x: torch.Tensor, factor: torch.Tensor | float, interpolation: str = "bilinear",
          padding: str = "zeros", fill: float = 0.0) -> torch.Tensor:
    """Zoom each sample about its centre by ``factor`` (B,); > 1 enlarges."""
    return affine(x, scale_matrix(_as_batch(factor, x)), interpolation, padding, fill)


def _as_batch(v: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v.to(x.device).float().expand(len(x)) if v.ndim == 0 else v.to(x.device)
    return torch.full((len(x),), float(v), device=x.device)


# -- thin configurable objects ----------------------------------------------------------

class GeometricOp(Op):
    """An op that is a per-sample affine map; a pipeline fuses runs of them.

    ``matrix(params, shape)`` returns the (B, 3, 3) maps (identity for samples the op
    skips); ``remainder`` is the pixel-value part applied after the resampling (none
    for pure geometry); it receives the resampled batch and may modify it in place.
    ``padding`` None means the op never samples outside the image, so it fuses with any
    padding.
    """

    kind: ClassVar[str] = "geometric"
    interpolation: str = "bilinear"
    padding: str | None = "zeros"
    fill: float = 0.0
    has_remainder: ClassVar[bool] = False
    projective: ClassVar[bool] = False  # maps are homographies (fused: projective grid)
    fusable: bool = True  # contributes a map (RandAugment without geometric ops does not)

    def _set_padding(self, padding: str, fill: float) -> None:
        self.padding = canonical_padding(padding, self.name)
        self.fill = check_number(self.name, "fill", fill, 0, 1)

    def _set_interpolation(self, interpolation: str) -> None:
        self.interpolation = check_choice(self.name, "interpolation", interpolation,
                                          INTERPOLATIONS)

    def matrix(self, params: Params, shape: torch.Size) -> torch.Tensor:
        raise NotImplementedError

    def remainder(self, x: torch.Tensor, y: torch.Tensor, params: Params
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def apply(self, x, y, params):
        m = self.matrix(params, x.shape)
        x = affine(x, m, self.interpolation, self.padding or "zeros", self.fill,
                   self.projective)
        return self.remainder(x, y, params)

    def _masked(self, params: Params, m: torch.Tensor) -> torch.Tensor:
        """Identity maps for the samples the op skips."""
        mask = params.get("mask")
        if mask is None:
            return m
        return torch.where(mask[:, None, None], m, torch.eye(3, device=m.device))


@register_op
class HFlip(GeometricOp):
    """Flip left-right with probability ``p`` per sample (exact)."""

    name = "hflip"
    aliases = ("flip", "horizontal_flip")
    interpolation = "nearest"
    padding = None

    def __init__(self, p: float = 0.5):
        super().__init__(p)

    def sample(self, shape, generator, device):
        # always draw: with p = 1 the mask is all-true, never "no draw"
        return {"mask": flip_mask(shape[0], self.p, generator, device)}

    def matrix(self, params, shape):
        return flip_matrix(hmask=params["mask"])

    def apply(self, x, y, params):
        return hflip(x, params["mask"]), y


@register_op
class VFlip(HFlip):
    """Flip upside-down with probability ``p`` per sample (exact)."""

    name = "vflip"
    aliases = ("vertical_flip",)

    def matrix(self, params, shape):
        return flip_matrix(vmask=params["mask"])

    def apply(self, x, y, params):
        return vflip(x, params["mask"]), y


@register_op
class Crop(GeometricOp):
    """Random crop of the image padded by ``pad`` pixels (exact integer offsets).

    Output pixel (i, j) = padded[i + pad + dy, j + pad + dx] with dy, dx uniform
    integers in [-pad, pad] drawn per sample (the classic CIFAR recipe with pad=4).
    """

    name = "crop"
    aliases = ("random_crop", "pad_crop")
    params = ("pad", "padding", "fill", "p")
    magnitude_param = "pad"
    interpolation = "nearest"

    def __init__(self, pad: int = 4, padding: str = "zeros", fill: float = 0.0, p: float = 1.0):
        super().__init__(p)
        self.pad = check_number(self.name, "pad", pad, 0, integer=True)
        self._set_padding(padding, fill)

    def sample(self, shape, generator, device):
        b = shape[0]
        mask = apply_mask(b, self.p, generator, device)
        dy = torch.randint(-self.pad, self.pad + 1, (b,), generator=generator, device=device)
        dx = torch.randint(-self.pad, self.pad + 1, (b,), generator=generator, device=device)
        return {"mask": mask, "dy": dy, "dx": dx}

    def matrix(self, params, shape):
        return self._masked(params, _from_rows(1, 0, params["dx"], 0, 1, params["dy"]))


@register_op
class Translate(GeometricOp):
    """Move the content by whole pixels, uniform in +-``fraction`` of the image size per axis."""

    name = "translate"
    aliases = ("shift",)
    params = ("fraction", "padding", "fill", "p")
    magnitude_param = "fraction"
    # RandAugment: up to 150/331 of the side at full magnitude (torchvision's scale)
    randaugment = (
        RandAugmentOp("translate_x", 3, matrix=lambda level, h, w: shift_matrix(
            150 / 331 * w * level, 0)),
        RandAugmentOp("translate_y", 4, matrix=lambda level, h, w: shift_matrix(
            0, 150 / 331 * h * level)),
    )
    interpolation = "nearest"

    def __init__(self, fraction: float = 0.125, padding: str = "zeros", fill: float = 0.0,
                 p: float = 1.0):
        super().__init__(p)
        self.fraction = check_number(self.name, "fraction", fraction, 0, 1)
        self._set_padding(padding, fill)

    def sample(self, shape, generator, device):
        b, _, h, w = shape
        mask = apply_mask(b, self.p, generator, device)
        mx, my = round(self.fraction * w), round(self.fraction * h)
        tx = torch.randint(-mx, mx + 1, (b,), generator=generator, device=device)
        ty = torch.randint(-my, my + 1, (b,), generator=generator, device=device)
        return {"mask": mask, "tx": tx, "ty": ty}

    def matrix(self, params, shape):
        return self._masked(params, shift_matrix(params["tx"], params["ty"]))


@register_op
class Rotate(GeometricOp):
    """Rotate by an angle uniform in [-degrees, degrees] (or a [low, high] range)."""

    name = "rotate"
    aliases = ("rotation",)
    params = ("degrees", "interpolation", "padding", "fill", "p")
    magnitude_param = "degrees"
    # RandAugment: up to 30 degrees at full magnitude
    randaugment = (RandAugmentOp("rotate", 5, matrix=lambda level, h, w: rotation_matrix(
        30.0 * level)),)

    def __init__(self, degrees: float | tuple[float, float] = 15.0,
                 interpolation: str = "bilinear", padding: str = "zeros", fill: float = 0.0,
                 p: float = 1.0):
        super().__init__(p)
        self.degrees = _symmetric_range(self.name, "degrees", degrees, 0, 360)
        self._set_interpolation(interpolation)
        self._set_padding(padding, fill)

    def sample(self, shape, generator, device):
        mask = apply_mask(shape[0], self.p, generator, device)
        return {"mask": mask, "angle": uniform(shape[0], *self.degrees, generator, device)}

    def matrix(self, params, shape):
        return self._masked(params, rotation_matrix(params["angle"]))


@register_op
class Shear(GeometricOp):
    """Shear by an angle uniform in [-degrees, degrees] along x, y or both."""

    name = "shear"
    params = ("degrees", "axes", "interpolation", "padding", "fill", "p")
    magnitude_param = "degrees"
    # RandAugment: shear factor up to 0.3 at full magnitude
    randaugment = (
        RandAugmentOp("shear_x", 1, matrix=lambda level, h, w: shear_matrix(0.3 * level)),
        RandAugmentOp("shear_y", 2, matrix=lambda level, h, w: shear_matrix(0.0, 0.3 * level)),
    )

    def __init__(self, degrees: float = 10.0, axes: str = "xy",
                 interpolation: str = "bilinear", padding: str = "zeros", fill: float = 0.0,
                 p: float = 1.0):
        super().__init__(p)
        self.degrees = check_number(self.name, "degrees", degrees, 0, 60)
        self.axes = check_choice(self.name, "axes", axes, ("x", "y", "xy"))
        self._set_interpolation(interpolation)
        self._set_padding(padding, fill)

    def sample(self, shape, generator, device):
        b = shape[0]
        mask = apply_mask(b, self.p, generator, device)
        t = math.tan(math.radians(self.degrees))
        sx = uniform(b, -t, t, generator, device)
        sy = uniform(b, -t, t, generator, device)
        return {"mask": mask, "sx": sx if "x" in self.axes else sx * 0,
                "sy": sy if "y" in self.axes else sy * 0}

    def matrix(self, params, shape):
        return self._masked(params, shear_matrix(params["sx"], params["sy"]))


@register_op
class Scale(GeometricOp):
    """Zoom about the centre by a factor uniform in ``scale`` ([low, high], or 1 +- m)."""

    name = "scale"
    aliases = ("zoom",)
    params = ("scale", "interpolation", "padding", "fill", "p")
    magnitude_param = "scale"

    def __init__(self, scale: float | tuple[float, float] = (0.9, 1.1),
                 interpolation: str = "bilinear", padding: str = "zeros", fill: float = 0.0,
                 p: float = 1.0):
        super().__init__(p)
        if isinstance(scale, int | float) and not isinstance(scale, bool):
            m = check_number(self.name, "scale", scale, 0, 0.95)
            scale = (1 - m, 1 + m)
        self.scale = check_range(self.name, "scale", scale, 0.05, 20)
        self._set_interpolation(interpolation)
        self._set_padding(padding, fill)

    def sample(self, shape, generator, device):
        mask = apply_mask(shape[0], self.p, generator, device)
        return {"mask": mask, "factor": uniform(shape[0], *self.scale, generator, device)}

    def matrix(self, params, shape):
        return self._masked(params, scale_matrix(params["factor"]))


@register_op
class ResizedCrop(GeometricOp):
    """Random resized crop (Szegedy et al. 2015): a box of ``scale`` x the image area and
    aspect ratio log-uniform in ``ratio`` is stretched over the whole frame.

    Batched without rejection sampling: a box larger than the image on one side is
    clamped to that side (torchvision retries 10 times, then falls back to a centre crop).
    """

    name = "resized_crop"
    aliases = ("random_resized_crop",)
    params = ("scale", "ratio", "interpolation", "p")
    magnitude_param = "scale"
    padding = None  # boxes stay inside the image

    def __init__(self, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), interpolation: str = "bilinear",
                 p: float = 1.0):
        super().__init__(p)
        if isinstance(scale, int | float) and not isinstance(scale, bool):
            scale = (check_number(self.name, "scale", scale, 0.01, 1), 1.0)
        self.scale = check_range(self.name, "scale", scale, 1e-4, 1)
        self.ratio = check_range(self.name, "ratio", ratio, 1e-2, 1e2)
        self._set_interpolation(interpolation)

    def sample(self, shape, generator, device):
        b, _, h, w = shape
        mask = apply_mask(b, self.p, generator, device)
        area = uniform(b, *self.scale, generator, device) * (h * w)
        log_r = uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), generator, device)
        r = log_r.exp()
        bw = (area * r).sqrt().clamp(max=w)  # box width, pixels
        bh = (area / r).sqrt().clamp(max=h)
        # box centre uniform over the positions that keep the box inside the frame
        cx = (uniform(b, 0, 1, generator, device) - 0.5) * (w - bw)
        cy = (uniform(b, 0, 1, generator, device) - 0.5) * (h - bh)
        return {"mask": mask, "cx": cx, "cy": cy, "bw": bw, "bh": bh}

    def matrix(self, params, shape):
        h, w = shape[-2:]
        m = box_matrix(params["cx"], params["cy"], params["bw"], params["bh"], h, w)
        return self._masked(params, m)


def _symmetric_range(op: str, key: str, value: Any, lo: float, hi: float
                     ) -> tuple[float, float]:
    """A number m means [-m, m]; a pair is taken as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        m = check_number(op, key, value, lo, hi)
        return (-m, m)
    return check_range(op, key, value, -hi, hi)
