"""Shared pieces of the batched augmentation operations.

Every operation is a pure function on a float batch ``x`` (B, C, H, W) with values in
[0, 1] plus a thin configurable object (an :class:`Op`).  An op draws all of its random
parameters for the whole batch at once, one value per sample, through an explicit
``torch.Generator`` (``sample``), then applies them with tensor ops (``apply``): no Python
loop over samples.  Splitting draw and application lets a pipeline fuse geometric ops
into one resampling and lets tests replay the exact parameters of a batch.

Every op class is registered with :func:`register_op` under its ``name``: :data:`OPS`
(the names ``data.augment`` tables, the CLI and error messages offer), :data:`ALIASES`
and RandAugment's op list are all read from the registered classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from cnnlab.errors import ConfigError, did_you_mean

Params = dict[str, Any]  # per-batch draws: (B,) tensors, masks, permutations


def uniform(
    b: int, lo: float, hi: float, generator: torch.Generator, device: torch.device | None = None
) -> torch.Tensor:
    """(B,) float32 uniform in [lo, hi)."""
    u = torch.rand(b, generator=generator, device=device)
    return u * (hi - lo) + lo if (lo, hi) != (0.0, 1.0) else u


def signs(b: int, generator: torch.Generator, device: torch.device | None = None) -> torch.Tensor:
    """(B,) float32 of +1 / -1 with equal probability."""
    return torch.randint(0, 2, (b,), generator=generator, device=device).float() * 2 - 1


def apply_mask(
    b: int, p: float, generator: torch.Generator, device: torch.device | None = None
) -> torch.Tensor | None:
    """(B,) bool: which samples an op with probability ``p`` touches; None means all of them.

    Nothing is drawn when ``p >= 1``, so the stream of draws depends only on the settings.
    """
    if p >= 1:
        return None
    return torch.rand(b, generator=generator, device=device) < p


def per_sample(v: torch.Tensor | float, ndim: int = 4) -> torch.Tensor | float:
    """View a (B,) parameter as (B, 1, 1, 1) so it broadcasts over (B, C, H, W)."""
    if isinstance(v, torch.Tensor) and v.ndim == 1:
        return v.view(-1, *([1] * (ndim - 1)))
    return v


def where_mask(mask: torch.Tensor | None, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` for the rows flagged in ``mask`` (B,), ``old`` elsewhere (None: all new).

    Selected with ``torch.lerp`` and 0/1 weights, which is exact for finite values and
    several times faster than ``torch.where`` on CPU.
    """
    if mask is None:
        return new
    return torch.lerp(old, new, per_sample(mask.to(new.dtype), new.ndim))


def select(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Elementwise ``torch.where(mask, new, old)`` for finite float tensors, via exact lerp."""
    return torch.lerp(old, new, mask.to(old.dtype))


@dataclass(frozen=True)
class RandAugmentOp:
    """One op of RandAugment's list, declared by the op class it belongs to.

    ``matrix(level, h, w)`` gives a geometric op's (B, 3, 3) maps (see ``geometry``) and
    ``apply(x, level)`` a colour op's output for ``x`` (b, C, H, W); ``level`` (B,) is the
    signed magnitude in [-1, 1] of the op's maximum.  ``index`` is the op's position in
    torchvision's RandAugment list: draws pick ops by position, so it fixes the stream.
    """

    name: str  # as in torchvision / the paper: "shear_x", "color", ...
    index: int
    matrix: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


class Op:
    """Base of the configurable augmentation objects.

    Subclasses set ``name`` (the key used in ``data.augment`` tables), list their
    keyword parameters in ``params`` (in order) and name the one a generic
    ``magnitude`` maps to in ``magnitude_param``.  ``kind`` is ``"geometric"`` (the op
    moves pixels: a per-sample 3 x 3 map that a pipeline fuses, or a displacement field as
    elastic distortion), ``"color"`` (pixel
    values only), ``"mix"`` (combines samples and soft labels) or ``"compound"``.
    A class's own ``aliases`` (other names it answers to) and ``randaugment`` (the ops
    it adds to RandAugment's list) are not inherited by its subclasses.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "color"
    params: ClassVar[tuple[str, ...]] = ("p",)
    magnitude_param: ClassVar[str | None] = None
    needs_num_classes: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ()
    randaugment: ClassVar[tuple[RandAugmentOp, ...]] = ()

    def __init__(self, p: float = 1.0):
        self.p = check_probability(self.name, "p", p)

    # -- the two halves of an op ------------------------------------------------------
    def sample(self, shape: torch.Size, generator: torch.Generator,
               device: torch.device) -> Params:
        """Draw every random parameter for a batch of ``shape`` (B, C, H, W)."""
        return {"mask": apply_mask(shape[0], self.p, generator, device)}

    def apply(self, x: torch.Tensor, y: torch.Tensor, params: Params
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply drawn ``params`` to ``x`` (B, C, H, W) and labels ``y``."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.apply(x, y, self.sample(x.shape, generator, x.device))

    # -- description ------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The op as a ``data.augment`` table: ``{"op": name, param: value, ...}``."""
        return {"op": self.name, **{k: getattr(self, k) for k in self.params}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "op")
        return f"{type(self).__name__}({args})"


# -- the registry --------------------------------------------------------------------------

KINDS = ("geometric", "color", "mix", "compound")  # the order OPS lists the kinds in

OPS: dict[str, type[Op]] = {}  # name -> class: by kind, then in registration order
ALIASES: dict[str, str] = {}  # other name -> name
_ORDER: dict[str, int] = {}  # name -> registration number


def register_op(cls: type[Op]) -> type[Op]:
    """Class decorator: make ``cls`` available as ``{op = cls.name}`` (and its aliases).

        @register_op
        class Invert(Op):
            name = "invert"
            ...
    """
    own = vars(cls)
    name = own.get("name")
    if not name or cls.kind not in KINDS:
        raise TypeError(f"{cls.__name__} needs its own name and a kind in {KINDS}")
    for key in (name, *own.get("aliases", ())):
        if key in OPS or key in ALIASES:
            raise ValueError(f"augment op name {key!r} of {cls.__name__} is taken")
    taken = {ra.name for c in OPS.values() for ra in vars(c).get("randaugment", ())}
    for ra in own.get("randaugment", ()):
        if ra.name in taken:
            raise ValueError(f"RandAugment op {ra.name!r} of {cls.__name__} is taken")
    _ORDER[name] = len(_ORDER)
    ranked = sorted({**OPS, name: cls}.items(),
                    key=lambda kv: (KINDS.index(kv[1].kind), _ORDER[kv[0]]))
    OPS.clear()
    OPS.update(ranked)
    ALIASES.update(dict.fromkeys(own.get("aliases", ()), name))
    return cls


def randaugment_ops() -> dict[str, RandAugmentOp]:
    """RandAugment's op list, name -> op, in torchvision's order: identity, then the ops
    the registered classes declare (``Op.randaugment``)."""
    found = [RandAugmentOp("identity", 0)]  # leaves the sample as it is
    found += [ra for cls in OPS.values() for ra in vars(cls).get("randaugment", ())]
    return {ra.name: ra for ra in sorted(found, key=lambda ra: ra.index)}


# -- parameter checks: one-line ConfigErrors naming the op and the parameter ------------

def check_probability(op: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"augment op '{op}': {key} must be a probability in [0, 1], "
                          f"got {value!r}")
    return float(value)


def check_number(op: str, key: str, value: Any, lo: float | None = None,
                 hi: float | None = None, integer: bool = False) -> float | int:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and lo is not None:
        ok = value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        kind = "an integer" if integer else "a number"
        rng = ""
        if lo is not None and hi is not None:
            rng = f" in [{lo}, {hi}]"
        elif lo is not None:
            rng = f" >= {lo}"
        elif hi is not None:
            rng = f" <= {hi}"
        raise ConfigError(f"augment op '{op}': {key} must be {kind}{rng}, got {value!r}")
    return int(value) if integer else float(value)


def check_range(op: str, key: str, value: Any, lo: float | None = None,
                hi: float | None = None) -> tuple[float, float]:
    """A ``[low, high]`` pair with lo <= low <= high <= hi."""
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or value[0] > value[1] or (lo is not None and value[0] < lo)
            or (hi is not None and value[1] > hi)):
        bounds = f" within [{lo}, {hi}]" if lo is not None and hi is not None else ""
        raise ConfigError(f"augment op '{op}': {key} must be a pair [low, high] with "
                          f"low <= high{bounds}, got {value!r}")
    return float(value[0]), float(value[1])


def check_choice(op: str, key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"augment op '{op}': {key} = {value!r} is not one of "
                          f"{', '.join(allowed)}{did_you_mean(value, allowed)}")
    return value
