"""Non-affine geometry from the Augmentor library: perspective skew and elastic distortion.

* :class:`Skew` moves one edge's two corners (a tilt) or one corner outward by a random
  amount and maps the image onto that quadrilateral: a per-sample homography (B, 3, 3) in
  ``geometry``'s centred pixel coordinates, so a pipeline fuses it with the affine ops
  around it into one resampling.  The quadrilateral always contains the frame, so no
  padding shows (as in Augmentor's ``skew``).
* :class:`Distort` displaces pixels by a smooth random field: a coarse grid of random
  offsets (Augmentor's ``random_distortion``: the outer edge stays in place), upsampled
  bicubically to the image and applied with one ``grid_sample`` per batch.

Both draw every parameter for the whole batch at once through the generator.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.augment.augbase import (
    Op,
    apply_mask,
    check_choice,
    check_number,
    register_op,
    uniform,
    where_mask,
)
from cnnlab.data.augment.geometry import (
    GeometricOp,
    _grid,
    canonical_padding,
    identity_matrix,
    sample_grid,
)
from cnnlab.errors import ConfigError

# -- perspective skew ---------------------------------------------------------------------

# The 12 moves of Augmentor's skew, as (corner, dx, dy) steps outward; corners in the order
# top-left, top-right, bottom-right, bottom-left.  A tilt moves both corners of one edge
# (that edge looks nearer), a corner move one corner along one axis.
SKEW_MOVES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "left": ((0, 0, -1), (3, 0, 1)),
    "right": ((1, 0, -1), (2, 0, 1)),
    "top": ((0, -1, 0), (1, 1, 0)),
    "bottom": ((3, -1, 0), (2, 1, 0)),
    "top_left_x": ((0, -1, 0),), "top_left_y": ((0, 0, -1),),
    "top_right_x": ((1, 1, 0),), "top_right_y": ((1, 0, -1),),
    "bottom_right_x": ((2, 1, 0),), "bottom_right_y": ((2, 0, 1),),
    "bottom_left_x": ((3, -1, 0),), "bottom_left_y": ((3, 0, 1),),
}
_MOVE_NAMES = tuple(SKEW_MOVES)
# Augmentor's skew types -> the moves each draws from (uniformly, per sample)
SKEW_TYPES: dict[str, tuple[str, ...]] = {
    "tilt": ("left", "right", "top", "bottom"),
    "tilt_left_right": ("left", "right"),
    "tilt_top_bottom": ("top", "bottom"),
    "corner": _MOVE_NAMES[4:],
    "random": _MOVE_NAMES,
}
_UNIT_SQUARE = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))  # TL, TR, BR, BL


# (12, 4, 2) unit corner displacements (dx, dy) of each move in SKEW_MOVES
_MOVE_TABLE = [[[0.0, 0.0] for _ in range(4)] for _ in SKEW_MOVES]
for _row, _steps in zip(_MOVE_TABLE, SKEW_MOVES.values()):
    for _corner, _dx, _dy in _steps:
        _row[_corner] = [float(_dx), float(_dy)]


def quad_homography(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) homographies H with H (dst_i, 1) ~ (src_i, 1) for four points (B, 4, 2).

    The 8 unknowns (h33 = 1) solve the standard 8 x 8 linear system, batched.
    """
    x, y = dst.unbind(-1)  # (B, 4)
    sx, sy = src.unbind(-1)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_x = torch.stack([x, y, one, zero, zero, zero, -sx * x, -sx * y], -1)  # (B, 4, 8)
    rows_y = torch.stack([zero, zero, zero, x, y, one, -sy * x, -sy * y], -1)
    a = torch.cat([rows_x, rows_y], 1)  # (B, 8, 8)
    h = torch.linalg.solve(a, torch.cat([sx, sy], 1))  # (B, 8)
    return torch.cat([h, one[:, :1]], 1).view(-1, 3, 3)


def skew_matrix(move: torch.Tensor, amount: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Maps (B, 3, 3) of the skews ``move`` (B,) (indices into :data:`SKEW_MOVES`) by
    ``amount`` (B,) pixels on images h x w.

    The corners are the outer pixel centres (+-(w-1)/2, +-(h-1)/2), so the output's edge
    pixels sample the input's edge pixels, never the half pixel beyond them.  Solved in
    units of the half sides (corners at +-1) for conditioning, then scaled to pixels.
    """
    half = torch.tensor([max((w - 1) / 2, 0.5), max((h - 1) / 2, 0.5)], device=amount.device)
    square = torch.tensor(_UNIT_SQUARE, device=amount.device).expand(len(move), 4, 2)
    table = torch.tensor(_MOVE_TABLE, device=amount.device)  # (12, 4, 2)
    moved = square + table[move] * (amount[:, None, None] / half)
    m = quad_homography(moved, square)  # output corner -> input corner, half-side units
    scale = torch.cat([half, half.new_ones(1)])  # pixels = diag(scale) @ half-side units
    return m * scale[:, None] / scale[None, :]


@register_op
class Skew(GeometricOp):
    """Perspective skew (Augmentor's ``skew``): per sample one move of ``type`` (``tilt``:
    left, right, top or bottom edge nearer; ``tilt_left_right``; ``tilt_top_bottom``;
    ``corner``: one corner pulled out along x or y; ``random``: any of the 12) by an amount
    uniform in [0, magnitude] x the longer side, in pixels."""

    name = "skew"
    aliases = ("perspective", "perspective_skew")
    params = ("magnitude", "type", "interpolation", "p")
    magnitude_param = "magnitude"
    projective = True
    padding = None  # the skewed quadrilateral covers the frame: nothing outside is sampled

    def __init__(self, magnitude: float = 0.3, type: str = "random",
                 interpolation: str = "bilinear", p: float = 1.0):
        super().__init__(p)
        self.magnitude = check_number(self.name, "magnitude", magnitude, 0, 1)
        self.type = check_choice(self.name, "type", type, tuple(SKEW_TYPES))
        self._set_interpolation(interpolation)
        self._moves = [_MOVE_NAMES.index(m) for m in SKEW_TYPES[self.type]]

    def sample(self, shape, generator, device):
        b, _, h, w = shape
        mask = apply_mask(b, self.p, generator, device)
        pick = torch.randint(0, len(self._moves), (b,), generator=generator, device=device)
        move = torch.tensor(self._moves, device=device)[pick]
        amount = uniform(b, 0, self.magnitude, generator, device) * max(h, w)  # pixels
        return {"mask": mask, "move": move, "amount": amount}

    def matrix(self, params, shape):
        h, w = shape[-2:]
        return self._masked(params, skew_matrix(params["move"], params["amount"], h, w))


# -- elastic distortion -------------------------------------------------------------------

def _grid_size(op: str, value: Any) -> tuple[int, int]:
    """``grid`` as (cells across, cells down): a number n means n x n."""
    pair = value if isinstance(value, list | tuple) else (value, value)
    if len(pair) != 2:
        raise ConfigError(f"augment op '{op}': grid must be an integer or a pair "
                          f"[across, down], got {value!r}")
    return tuple(check_number(op, "grid", v, 2, 64, integer=True) for v in pair)


@register_op
class Distort(Op):
    """Elastic distortion (Augmentor's ``random_distortion``): the image is cut into a
    ``grid`` of cells whose inner vertices move by up to ``magnitude`` pixels per axis
    (uniform, per sample); the offsets are smoothed over the image bicubically, so pixels
    move by at most ``magnitude`` and the outer edge stays in place."""

    name = "distort"
    kind = "geometric"  # moves pixels, but not by a (fusable) 3 x 3 map
    aliases = ("elastic", "elastic_distortion", "random_distortion")
    params = ("magnitude", "grid", "padding", "fill", "p")
    magnitude_param = "magnitude"

    def __init__(self, magnitude: float = 2.0, grid: int | tuple[int, int] = 4,
                 padding: str = "border", fill: float = 0.0, p: float = 1.0):
        super().__init__(p)
        self.magnitude = check_number(self.name, "magnitude", magnitude, 0, 1000)
        self.grid = _grid_size(self.name, grid)
        self.padding = canonical_padding(padding, self.name)
        self.fill = check_number(self.name, "fill", fill, 0, 1)

    def config(self):
        cfg = super().config()
        cfg["grid"] = list(self.grid)
        return cfg

    def sample(self, shape, generator, device):
        b = shape[0]
        mask = apply_mask(b, self.p, generator, device)
        gx, gy = self.grid
        m = self.magnitude
        offsets = uniform(b * 2 * (gy + 1) * (gx + 1), -m, m, generator, device)
        offsets = offsets.view(b, 2, gy + 1, gx + 1)  # (B, (dx, dy), vertex rows, columns)
        ring = torch.ones(gy + 1, gx + 1, device=device)
        ring[1:-1, 1:-1] = 0  # the outer vertices stay where they are
        return {"mask": mask, "offsets": offsets.masked_fill(ring.bool(), 0.0)}

    def field(self, params, shape) -> torch.Tensor:
        """(B, 2, H, W) displacement in pixels (dx right, dy down) of every output pixel."""
        h, w = shape[-2:]
        smooth = F.interpolate(params["offsets"], size=(h, w), mode="bicubic",
                               align_corners=True)  # vertices on the edge pixels
        return smooth.clamp_(-self.magnitude, self.magnitude)  # bicubic may overshoot

    def apply(self, x, y, params):
        b, _, h, w = x.shape
        align = self.padding == "reflect"  # as geometry.affine
        norm = torch.tensor([2 / max(w - align, 1), 2 / max(h - align, 1)], device=x.device,
                            dtype=x.dtype)  # pixels -> grid_sample units
        grid = _grid(identity_matrix(b, x.device).to(x.dtype), h, w, align)  # (B, H, W, 2)
        grid = grid + self.field(params, x.shape).to(x.dtype).permute(0, 2, 3, 1) * norm
        out = sample_grid(x, grid, "bilinear", self.padding, self.fill, align)
        return where_mask(params["mask"], out, x), y
