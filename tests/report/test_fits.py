"""Power-law fits (err = a n^-alpha + c), the interval of alpha over repetitions, Pareto fronts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.report.fits import (
    FitError,
    alpha_interval,
    fit_power_law,
    fit_reps,
    pareto_front,
)

SIZES = np.array([100, 200, 400, 800, 1600, 3200, 6400], dtype=float)


def _noisy(a: float, alpha: float, c: float, rel: float, seed: int, n=SIZES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (a * n**-alpha + c) * (1 + rel * rng.standard_normal(n.size))


@pytest.mark.parametrize("c", [0.1, 0.0])
def test_fit_recovers_the_exponent(c):
    law = fit_power_law(SIZES, _noisy(5.0, 0.4, c, 0.02, seed=1))
    assert law.alpha == pytest.approx(0.4, abs=0.05)
    assert law.c == pytest.approx(c, abs=0.03) and 0 <= law.c < 5.0 * SIZES.max() ** -0.4 + c
    assert law.sizes == 7 and law.points == 7 and not law.fixed_c
    assert math.isfinite(law.alpha_std) and law.alpha_std < 0.1
    assert float(law(1000)) == pytest.approx(5.0 * 1000**-0.4 + c, rel=0.05)


def test_exact_data_is_fitted_exactly_and_a_is_in_images():
    law = fit_power_law(SIZES * 10, 5.0 * (SIZES * 10) ** -0.4 + 0.1)
    assert (law.a, law.alpha, law.c) == pytest.approx((5.0, 0.4, 0.1), rel=1e-4)


def test_interval_over_reps_covers_the_true_exponent():
    n = np.tile(SIZES, 5)
    reps = np.repeat(np.arange(5), SIZES.size)
    err = np.concatenate([_noisy(5.0, 0.4, 0.1, 0.03, seed=10 + r) for r in range(5)])
    pooled, per_rep, ci = fit_reps(n, err, reps)
    assert len(per_rep) == 5 and all(f is not None for f in per_rep)
    assert ci.n == 5 and ci.lo < 0.4 < ci.hi and ci.hi - ci.lo < 0.2
    assert ci.mean == pytest.approx(np.mean([f.alpha for f in per_rep]))
    assert pooled.alpha == pytest.approx(0.4, abs=0.05) and pooled.points == 35


def test_alpha_interval_needs_two_values_and_stays_in_range():
    one = alpha_interval([0.4])
    assert one.mean == 0.4 and not one.ok and math.isnan(one.lo) and str(one) == "[–]"
    wide = alpha_interval([0.1, 0.9])  # t(1) = 12.7: the raw interval reaches below 0
    assert wide.ok and wide.lo == 0.0 and wide.hi == 3.0
    assert alpha_interval([]).n == 0


def test_fewer_than_three_sizes_is_a_clear_error():
    with pytest.raises(FitError, match="2 distinct training-set sizes .*at least 3"):
        fit_power_law([100, 100, 200, 200], [0.5, 0.52, 0.4, 0.41])
    with pytest.raises(FitError, match="positive"):
        fit_power_law([0, 100, 200], [0.5, 0.4, 0.3])


def test_c_is_held_at_zero_when_an_error_is_zero_or_asked():
    law = fit_power_law(SIZES, 5.0 * SIZES**-0.4 * np.r_[np.ones(6), 0.0])
    assert law.fixed_c and law.c == 0.0 and 0 < law.alpha < 3
    law = fit_power_law(SIZES, _noisy(5.0, 0.4, 0.0, 0.01, seed=2), fit_c=False)
    assert law.fixed_c and law.alpha == pytest.approx(0.4, abs=0.03)


def test_pareto_front():
    pts = [(1, 0.5), (2, 0.6), (2, 0.4), (3, 0.4), (4, 0.3), (0.5, 0.9), (5, float("nan"))]
    assert pareto_front(pts) == [(0.5, 0.9), (1.0, 0.5), (2.0, 0.4), (4.0, 0.3)]
    assert pareto_front([]) == []
