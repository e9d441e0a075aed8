"""Power-law fits of error against scale, their confidence intervals, and Pareto fronts.

    >>> law = fit_power_law([1000, 2500, 5000, 10000], [0.52, 0.41, 0.35, 0.30])
    >>> law.alpha, law(20000)                     # the exponent and the error it predicts
    >>> ci = alpha_interval([0.41, 0.37, 0.44])   # mean and t-based 95% interval over reps

The model is ``err ≈ a · n^(-alpha) + c`` (Hestness et al. 2017, "Deep learning scaling is
predictable, empirically"): ``a > 0``, ``0 < alpha < 3`` and an irreducible error
``0 <= c < min(err)``. It is fitted by least squares with each point weighted by its own
error (``sigma ∝ err``), so the residuals are relative: the small errors at large ``n``
count as much as the large errors at small ``n``, as they would in a log-log fit.
Plain numpy and scipy; no matplotlib.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.errors import CnnlabError

__all__ = ["AlphaInterval", "FitError", "PowerLaw", "alpha_interval", "fit_power_law",
           "fit_reps", "pareto_front"]

ALPHA_MAX = 3.0  # the exponent's upper bound: steeper than n^-3 is not a scaling law
MIN_SIZES = 3  # a, alpha and c need three distinct sizes


class FitError(CnnlabError):
    """A power law that cannot be fitted: too few sizes, bad values, no convergence."""


@dataclass(frozen=True)
class PowerLaw:
    """A fitted ``err = a · n^(-alpha) + c``.

    ``alpha_std`` is curve_fit's standard error of ``alpha`` (from the covariance of the
    fit; NaN when the points leave no degree of freedom); ``fixed_c`` says ``c`` was held at
    0 (when the three-parameter fit failed or ``min(err)`` is 0); ``points`` and ``sizes``
    count the points and the distinct ``n`` fitted; ``rmse`` is the root mean square of the
    relative residuals ``(err - fit) / err``.
    """

    a: float
    alpha: float
    c: float
    alpha_std: float = math.nan
    fixed_c: bool = False
    points: int = 0
    sizes: int = 0
    rmse: float = math.nan

    def __call__(self, n: float | Sequence[float] | np.ndarray) -> np.ndarray:
        return self.a * np.asarray(n, dtype=float) ** -self.alpha + self.c


@dataclass(frozen=True)
class AlphaInterval:
    """Mean of per-repetition exponents and its t-based interval (NaN with one value)."""

    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    @property
    def ok(self) -> bool:
        return self.n >= 2 and math.isfinite(self.lo)

    def __str__(self) -> str:
        return f"[{self.lo:.2f}, {self.hi:.2f}]" if self.ok else "[–]"


def _clean(n, err) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(n, dtype=float).ravel()
    y = np.asarray(err, dtype=float).ravel()
    if x.shape != y.shape:
        raise FitError(f"sizes and errors differ in length ({x.size} vs {y.size})")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if np.any(x <= 0):
        raise FitError(f"sizes must be positive, got {x[x <= 0].tolist()}")
    if np.any(y < 0):
        raise FitError(f"errors must be non-negative, got {y[y < 0].tolist()}")
    return x, y


def fit_power_law(n: Sequence[float] | np.ndarray, err: Sequence[float] | np.ndarray, *,
                  fit_c: bool = True) -> PowerLaw:
    """Fit ``err ≈ a · n^(-alpha) + c`` to points ``(n, err)`` (several per ``n`` allowed:
    repetitions pooled). With ``fit_c=False``, or when the three-parameter fit does not
    converge or every error cannot leave room for ``c`` (``min(err) == 0``), ``c`` is held
    at 0 (``PowerLaw.fixed_c``). Raises :class:`FitError` with fewer than 3 distinct ``n``
    or when no fit converges.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    x, y = _clean(n, err)
    sizes = len(np.unique(x))
    if sizes < MIN_SIZES:
        raise FitError(f"{sizes} distinct training-set size{'s' if sizes != 1 else ''} "
                       f"(at least {MIN_SIZES} are needed to fit a, alpha and c)")
    if np.all(y == 0):
        raise FitError("every error is 0: nothing to fit")
    # n in units of its geometric mean keeps a of order err (n up to 1e5 otherwise makes
    # a = err · n^alpha huge and the problem badly scaled); a is converted back below
    ref = float(np.exp(np.mean(np.log(x))))
    u = x / ref
    sigma = np.maximum(y, 1e-3 * y.max())  # relative residuals; a zero error gets a floor
    c_hi = float(y.min())
    y_span = float(y.max())

    def start(c0: float) -> list[float]:
        # alpha and a from a straight line through log(err - c0) against log(u)
        z = np.log(np.maximum(y - c0, 1e-3 * y_span))
        slope, icpt = np.polyfit(np.log(u), z, 1)
        return [float(np.exp(icpt)), float(np.clip(-slope, 0.02, ALPHA_MAX - 0.02))]

    best: tuple[float, np.ndarray, np.ndarray] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)  # singular covariance: NaN std
        if fit_c and c_hi > 0:
            for frac in (0.0, 0.5, 0.9):  # a few starting plateaus; keep the best fit
                c0 = frac * c_hi
                a0, al0 = start(c0)
                p0 = [max(a0, 1e-9), al0, min(max(c0, 1e-12 * c_hi), c_hi * (1 - 1e-6))]
                try:
                    p, cov = curve_fit(
                        lambda t, a, al, c: a * t**-al + c, u, y, p0=p0, sigma=sigma,
                        bounds=([0.0, 0.0, 0.0], [np.inf, ALPHA_MAX, c_hi]), maxfev=20000)
                except (RuntimeError, ValueError):
                    continue
                sse = float(np.sum(((y - (p[0] * u**-p[1] + p[2])) / sigma) ** 2))
                if np.all(np.isfinite(p)) and (best is None or sse < best[0]):
                    best = (sse, p, cov)
        fixed_c = best is None
        if fixed_c:
            a0, al0 = start(0.0)
            try:
                p, cov = curve_fit(lambda t, a, al: a * t**-al, u, y, p0=[max(a0, 1e-9), al0],
                                   sigma=sigma, bounds=([0.0, 0.0], [np.inf, ALPHA_MAX]),
                                   maxfev=20000)
            except (RuntimeError, ValueError) as e:
                raise FitError(f"the power-law fit did not converge ({e})") from None
            best = (math.nan, np.append(p, 0.0), cov)
    _, p, cov = best
    a_u, alpha, c = (float(v) for v in p)
    c = 0.0 if c < 1e-9 * y_span else c  # the optimizer stops just inside the bound
    var = float(np.asarray(cov)[1, 1]) if np.ndim(cov) == 2 else math.nan
    alpha_std = math.sqrt(var) if math.isfinite(var) and var >= 0 else math.nan
    fit = a_u * u**-alpha + c
    return PowerLaw(a=a_u * ref**alpha, alpha=alpha, c=c, alpha_std=alpha_std,
                    fixed_c=fixed_c, points=int(x.size), sizes=sizes,
                    rmse=float(np.sqrt(np.mean(((y - fit) / sigma) ** 2))))


def alpha_interval(alphas: Sequence[float], level: float = 0.95,
                   bounds: tuple[float, float] = (0.0, ALPHA_MAX)) -> AlphaInterval:
    """Mean of ``alphas`` (one per repetition) ± the t-based ``level`` interval,
    ``t_{k-1} · s / sqrt(k)``, clipped to ``bounds`` (the fit's range of alpha: with two
    or three repetitions the t quantile is large and the raw interval can reach below 0);
    NaN bounds with fewer than two finite values."""
    from scipy.stats import t

    vals = np.asarray([a for a in alphas if a is not None and math.isfinite(a)], dtype=float)
    k = int(vals.size)
    if k == 0:
        return AlphaInterval(math.nan, math.nan, math.nan, 0, level)
    mean = float(vals.mean())
    if k < 2:
        return AlphaInterval(mean, math.nan, math.nan, k, level)
    half = float(t.ppf(0.5 + level / 2, k - 1) * vals.std(ddof=1) / math.sqrt(k))
    lo, hi = bounds
    return AlphaInterval(mean, max(mean - half, lo), min(mean + half, hi), k, level)


def fit_reps(n: Sequence[float], err: Sequence[float], reps: Sequence[int], *,
             fit_c: bool = True) -> tuple[PowerLaw, list[PowerLaw | None], AlphaInterval]:
    """The pooled fit over all points, one fit per repetition (its runs across sizes;
    None where that fails) and the interval of the per-repetition exponents. Raises
    :class:`FitError` when the pooled fit fails."""
    x, y, r = (np.asarray(v, dtype=float) for v in (n, err, reps))
    pooled = fit_power_law(x, y, fit_c=fit_c)
    per_rep: list[PowerLaw | None] = []
    for rep in np.unique(r):
        mask = r == rep
        try:
            per_rep.append(fit_power_law(x[mask], y[mask], fit_c=fit_c))
        except FitError:
            per_rep.append(None)
    return pooled, per_rep, alpha_interval([f.alpha for f in per_rep if f is not None])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats in both ``(compute, error)`` (lower is better),
    sorted by compute: each has a strictly lower error than every cheaper point.
    Points with a non-finite coordinate are ignored."""
    pts = sorted((float(c), float(e)) for c, e in points
                 if math.isfinite(float(c)) and math.isfinite(float(e)))
    front: list[tuple[float, float]] = []
    for c, e in pts:  # by compute, then error: the first of equal computes is the best
        if not front or e < front[-1][1]:
            front.append((c, e))
    return front
