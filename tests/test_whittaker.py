"""The Whittaker smoother: the banded solve is the dense one, and gaps in a known curve are filled."""

from __future__ import annotations

import numpy as np
import pytest

from musyq.core.errors import MusyqError
from musyq.timeseries.whittaker import _factor, _inverse_diagonal, penalty_bands, smooth


def _dense(times: np.ndarray, values: np.ndarray, weights: np.ndarray, lam: float) -> np.ndarray:
    """(W + lam D'D) z = W y with the second divided differences written out as a full matrix."""
    n = times.size
    d = np.zeros((n - 2, n))
    for i in range(1, n - 1):
        left, right = times[i] - times[i - 1], times[i + 1] - times[i]
        d[i - 1, i - 1:i + 2] = 2 / (left * (left + right)), -2 / (left * right), 2 / (right * (left + right))
    return np.linalg.solve(np.diag(weights) + lam * d.T @ d, weights * values)


def test_banded_solve_equals_the_dense_normal_equations() -> None:
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.choice([8.0, 16.0, 24.0], 60))
    values = rng.normal(0.5, 0.2, (3, 60))
    weights = rng.uniform(0, 1, (3, 60)) * (rng.random((3, 60)) > 0.3)
    scaled = (times - times[0]) / np.median(np.diff(times))
    for lam in (0.5, 30.0, 2000.0):
        ours = smooth(times, values, weights, lam=lam, asymmetric=False, robust=False).curve
        for k in range(3):
            np.testing.assert_allclose(ours[k], _dense(scaled, values[k], weights[k], lam), atol=1e-8)


def test_the_inverse_diagonal_is_the_dense_one() -> None:
    """The variances and the GCV trace come from diag((W + lam P)^-1) by the banded recursion."""
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.choice([1.0, 2.0, 3.0], 40))
    weights = rng.uniform(0, 1, 40) * (rng.random(40) > 0.3)
    p0, p1, p2 = penalty_bands(times)
    diag, l1, l2, s0 = (np.empty(40) for _ in range(4))
    _factor(weights, 5.0, p0, p1, p2, diag, l1, l2)
    _inverse_diagonal(diag, l1, l2, s0)
    dense = np.diag(weights + 5 * p0) + 5 * (np.diag(p1[:-1], 1) + np.diag(p1[:-1], -1) + np.diag(p2[:-2], 2)
                                             + np.diag(p2[:-2], -2))
    np.testing.assert_allclose(s0, np.diag(np.linalg.inv(dense)), rtol=1e-9)


def test_gaps_in_a_seasonal_curve_are_filled_and_clouds_pull_it_less() -> None:
    """A double-logistic NDVI season every 8 days with a third of the dates missing and a sixth lowered by
    cloud: the robust GCV smoother with asymmetric weights recovers the hidden truth within 0.03."""
    rng = np.random.default_rng(2)
    times = np.arange(0.0, 365.0, 8.0)
    truth = 0.2 + 0.6 / (1 + np.exp(-(times - 120) / 12)) - 0.6 / (1 + np.exp(-(times - 270) / 15))
    observed = truth + rng.normal(0, 0.01, times.size)
    missing = rng.random(times.size) < 1 / 3
    cloudy = ~missing & (rng.random(times.size) < 1 / 6)
    observed[cloudy] -= rng.uniform(0.1, 0.4, cloudy.sum())
    observed[missing] = np.nan
    curve, sigma, lam = smooth(times, observed)
    assert np.sqrt(np.mean((curve[missing] - truth[missing]) ** 2)) < 0.02
    assert np.abs(curve[cloudy] - truth[cloudy]).max() < 0.03
    plain = smooth(times, observed, asymmetric=False, robust=False).curve
    assert np.abs(plain[cloudy] - truth[cloudy]).mean() > 3 * np.abs(curve[cloudy] - truth[cloudy]).mean()
    assert 0.01 <= float(lam) <= 1e4
    assert np.all(sigma[missing] > 0.005) and np.all(sigma < 0.1)


def test_bad_times_are_refused() -> None:
    with pytest.raises(MusyqError, match="strictly increasing"):
        smooth([1.0, 2.0, 2.0, 3.0], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(MusyqError, match="do not match"):
        smooth([1.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3])
