"""The Whittaker smoother (Eilers 2003) for irregularly sampled, gappy series: strength chosen per series by
generalized cross-validation, outliers removed, asymmetric weights for clouds, and a posterior uncertainty.

The curve ``z`` minimizes ``sum w (y - z)^2 + lambda sum (D2 z)^2``, with ``D2`` the second divided
differences at the series' times (in units of a given step, so one lambda means the same roughness at 8 and 16
days). The normal equations ``A z = W y`` are pentadiagonal and symmetric; an LDL' factorization solves them in
O(n) per series, and the Hutchinson-de Hoog recursion gives the diagonal of ``A^-1`` in O(n) as well: the hat
matrix's trace for GCV and, read as the posterior covariance of a Gaussian smoothness prior, each fitted
value's variance. Written here because ``whittaker-eilers`` smooths one series per Python call and has neither
GCV on uneven times, asymmetric reweighting nor variances, and a tile holds millions of series.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from musyq.core.errors import MusyqError

Array = NDArray[np.float64]

LAMBDAS = np.logspace(-2, 4, 9)  # GCV candidates, 0.75 decade apart, refined by a parabola in log lambda
BISQUARE = 4.685  # Tukey's bisquare constant (95 % efficiency for Gaussian residuals)
ROBUST_ROUNDS = 3
MIN_OBSERVATIONS = 4


@numba.njit(cache=True)
def penalty_bands(times: Array) -> tuple[Array, Array, Array]:  # pragma: no cover - compiled
    """The three bands of ``D2' D2`` for uneven ``times``: diagonal, first and second off-diagonal."""
    n = times.size
    p0, p1, p2 = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(1, n - 1):
        left, right = times[i] - times[i - 1], times[i + 1] - times[i]
        c0 = 2.0 / (left * (left + right))
        c1 = -2.0 / (left * right)
        c2 = 2.0 / (right * (left + right))
        # the row (c0, c1, c2) at columns i-1, i, i+1 adds outer(c, c)
        p0[i - 1] += c0 * c0
        p0[i] += c1 * c1
        p0[i + 1] += c2 * c2
        p1[i - 1] += c0 * c1
        p1[i] += c1 * c2
        p2[i - 1] += c0 * c2
    return p0, p1, p2


@numba.njit(cache=True)
def _factor(weights: Array, lam: float, p0: Array, p1: Array, p2: Array,
            diag: Array, l1: Array, l2: Array) -> None:  # pragma: no cover - compiled
    """LDL' of ``W + lam P``: ``diag`` is D, ``l1[i] = L[i+1, i]`` and ``l2[i] = L[i+2, i]``."""
    n = weights.size
    for i in range(n):
        value = weights[i] + lam * p0[i]
        if i >= 1:
            value -= l1[i - 1] ** 2 * diag[i - 1]
        if i >= 2:
            value -= l2[i - 2] ** 2 * diag[i - 2]
        diag[i] = value
        l1[i] = 0.0
        l2[i] = 0.0
        if i + 1 < n:
            off = lam * p1[i]
            if i >= 1:
                off -= l2[i - 1] * l1[i - 1] * diag[i - 1]
            l1[i] = off / value
        if i + 2 < n:
            l2[i] = lam * p2[i] / value


@numba.njit(cache=True)
def _substitute(diag: Array, l1: Array, l2: Array, rhs: Array) -> None:  # pragma: no cover - compiled
    """Solve ``L D L' x = rhs`` in place."""
    n = diag.size
    for i in range(n):
        if i >= 1:
            rhs[i] -= l1[i - 1] * rhs[i - 1]
        if i >= 2:
            rhs[i] -= l2[i - 2] * rhs[i - 2]
    for i in range(n):
        rhs[i] /= diag[i]
    for i in range(n - 1, -1, -1):
        if i + 1 < n:
            rhs[i] -= l1[i] * rhs[i + 1]
        if i + 2 < n:
            rhs[i] -= l2[i] * rhs[i + 2]


@numba.njit(cache=True)
def _inverse_diagonal(diag: Array, l1: Array, l2: Array, s0: Array) -> None:  # pragma: no cover - compiled
    """The diagonal of ``(L D L')^-1`` by the recursion ``S = D^-1 L^-1 + (I - L') S`` from the last row up."""
    n = diag.size
    next0 = next1 = after0 = 0.0  # S[i+1,i+1], S[i+1,i+2], S[i+2,i+2]
    for i in range(n - 1, -1, -1):
        s1 = -(l1[i] * next0 + l2[i] * next1)
        s2 = -(l1[i] * next1 + l2[i] * after0)
        s0[i] = 1.0 / diag[i] - l1[i] * s1 - l2[i] * s2
        after0, next0, next1 = next0, s0[i], s1


@numba.njit(cache=True)
def _gcv_scores(values: Array, weights: Array, lambdas: Array, p0: Array, p1: Array, p2: Array,
                scores: Array) -> None:  # pragma: no cover - compiled
    """Generalized cross-validation scores ``n RSS / (n - tr H)^2`` of all candidate lambdas at once.

    The factorization, the solve and the inverse-diagonal recursion each run down the series serially; running
    the candidates side by side in the inner loop (arrays ``(node, candidate)``, two rows of zeros either side so
    no branch guards the ends) lets the processor overlap those chains and use its vector units.
    """
    n, k = values.size, lambdas.size
    d = np.zeros((n + 4, k))  # D, rows shifted by two
    a1 = np.zeros((n + 4, k))  # L[i+1, i]
    a2 = np.zeros((n + 4, k))  # L[i+2, i]
    z = np.zeros((n + 4, k))  # the solution
    s0 = np.zeros((n + 4, k))  # diag(A^-1)
    s1 = np.zeros((n + 4, k))  # A^-1[i, i+1]
    for i in range(n):
        r = i + 2
        w, q0, q1, q2 = weights[i], p0[i], p1[i], p2[i]
        wy = w * values[i]
        for j in range(k):
            lam = lambdas[j]
            value = w + lam * q0 - a1[r - 1, j] ** 2 * d[r - 1, j] - a2[r - 2, j] ** 2 * d[r - 2, j]
            inverse = 1.0 / value
            d[r, j] = value
            a1[r, j] = (lam * q1 - a2[r - 1, j] * a1[r - 1, j] * d[r - 1, j]) * inverse
            a2[r, j] = lam * q2 * inverse
            z[r, j] = wy - a1[r - 1, j] * z[r - 1, j] - a2[r - 2, j] * z[r - 2, j]
    for i in range(n - 1, -1, -1):
        r = i + 2
        for j in range(k):
            z[r, j] = z[r, j] / d[r, j] - a1[r, j] * z[r + 1, j] - a2[r, j] * z[r + 2, j]
            t1 = -(a1[r, j] * s0[r + 1, j] + a2[r, j] * s1[r + 1, j])
            t2 = -(a1[r, j] * s1[r + 1, j] + a2[r, j] * s0[r + 2, j])
            s0[r, j] = 1.0 / d[r, j] - a1[r, j] * t1 - a2[r, j] * t2
            s1[r, j] = t1
    n_obs = 0.0
    for i in range(n):
        if weights[i] > 0:
            n_obs += 1.0
    for j in range(k):
        scores[j] = 0.0
        s1[0, j] = 0.0  # the trace, reusing a padding row
    for i in range(n):
        w, y = weights[i], values[i]
        for j in range(k):
            scores[j] += w * (y - z[i + 2, j]) ** 2
            s1[0, j] += w * s0[i + 2, j]
    for j in range(k):
        free = max(n_obs - s1[0, j], 1e-3)
        scores[j] = n_obs * scores[j] / (free * free)


@numba.njit(cache=True)
def _choose_lambda(values: Array, weights: Array, lambdas: Array, p0: Array, p1: Array,
                   p2: Array) -> float:  # pragma: no cover - compiled
    """The GCV minimum over the candidates, refined by a parabola through it and its neighbours in log lambda."""
    k = lambdas.size
    scores = np.empty(k)
    _gcv_scores(values, weights, lambdas, p0, p1, p2, scores)
    best = int(np.argmin(scores))
    if best == 0 or best == k - 1:
        return float(lambdas[best])
    x0, x1, x2 = np.log(lambdas[best - 1]), np.log(lambdas[best]), np.log(lambdas[best + 1])
    y0, y1, y2 = scores[best - 1], scores[best], scores[best + 1]
    denominator = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denominator
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denominator
    if a <= 0:
        return float(lambdas[best])
    return float(np.exp(min(max(-b / (2 * a), x0), x2)))


@numba.njit(cache=True)
def fit_series(
    values: Array, weights: Array, lambdas: Array, p0: Array, p1: Array, p2: Array, asymmetric: bool,
    iterations: int, curve: Array, variance: Array, final_weights: Array, work: Array,
) -> float:  # pragma: no cover - compiled
    """Fit one series robustly; writes the curve, the predictive variance of a new observation at each time,
    the weights of the last fit and its factorization (``work``: D, L's two bands and diag(A^-1)), and returns
    lambda (NaN when the series is too thin to fit).

    Robustness follows Garcia (2010): each round picks lambda by GCV under the current weights, then gives each
    observation a bisquare weight from its studentized residual ``r / sqrt(1 - h)``, which stays large for a
    cloud even when a weak lambda runs the curve through it. ``asymmetric`` spares residuals above the curve
    (vegetation indices, which clouds and aerosol only lower).
    """
    n = values.size
    diag, l1, l2, s0 = work[0], work[1], work[2], work[3]
    n_obs = 0
    for i in range(n):
        final_weights[i] = weights[i]
        if weights[i] > 0:
            n_obs += 1
    if n_obs < MIN_OBSERVATIONS:
        curve[:] = np.nan
        variance[:] = np.nan
        return np.nan
    studentized = np.empty(n_obs)
    low, high = np.inf, -np.inf
    for i in range(n):
        if weights[i] > 0:
            low, high = min(low, values[i]), max(high, values[i])
    spread = high - low
    lam = lambdas[0]
    local = np.empty(3)
    step = lambdas[1] / lambdas[0] if lambdas.size > 1 else 1.0
    for round_ in range(iterations + 1):
        if lambdas.size > 1 and round_ <= 1:
            lam = _choose_lambda(values, final_weights, lambdas, p0, p1, p2)
        elif lambdas.size > 1:
            # the first robust weights settle lambda; later rounds move it a grid step at most (a third of the work)
            local[0], local[1], local[2] = lam / step, lam, lam * step
            lam = _choose_lambda(values, final_weights, local, p0, p1, p2)
        _factor(final_weights, lam, p0, p1, p2, diag, l1, l2)
        for i in range(n):
            curve[i] = final_weights[i] * values[i]
        _substitute(diag, l1, l2, curve)
        _inverse_diagonal(diag, l1, l2, s0)
        if round_ == iterations:
            break
        k = 0
        for i in range(n):
            if weights[i] > 0:
                leverage = min(final_weights[i] * s0[i], 0.99)
                studentized[k] = (values[i] - curve[i]) / np.sqrt(1.0 - leverage)
                k += 1
        # a floor of 1 % of the values' range keeps a noise-free series from calling rounding an outlier
        scale = BISQUARE * max(1.4826 * np.median(np.abs(studentized - np.median(studentized))), 1e-2 * spread)
        if scale <= 0:
            break
        k = 0
        for i in range(n):
            if weights[i] > 0:
                u = studentized[k] / scale
                k += 1
                robust = (1.0 - u * u) ** 2 if abs(u) < 1.0 else 0.0
                final_weights[i] = weights[i] * (1.0 if asymmetric and u > 0 else robust)
    rss, trace, used = 0.0, 0.0, 0.0
    for i in range(n):
        if final_weights[i] > 0:
            rss += final_weights[i] * (values[i] - curve[i]) ** 2
            trace += final_weights[i] * s0[i]
            used += final_weights[i]
    sigma2 = rss / max(used - trace, 1.0)
    for i in range(n):
        variance[i] = sigma2 * (1.0 + s0[i])
    return float(lam)


@numba.njit(cache=True)
def factorize(weights: Array, lam: float, p0: Array, p1: Array, p2: Array,
              work: Array) -> None:  # pragma: no cover - compiled
    """The factorization :func:`refit_band` reuses, for a given lambda and weights (``work``: D, L's two bands
    and diag(A^-1))."""
    _factor(weights, lam, p0, p1, p2, work[0], work[1], work[2])
    _inverse_diagonal(work[0], work[1], work[2], work[3])


@numba.njit(cache=True)
def refit_band(values: NDArray[np.floating], weights: Array, work: Array,
               curve: NDArray[np.floating]) -> float:  # pragma: no cover - compiled
    """Smooth another variable of the same pixel with the factorization ``work`` that :func:`fit_series` left
    (the guide's lambda and robust weights, so the bands stay consistent with each other: a lambda per band
    fitted the hidden truth worse); returns the residual variance, the predictive variance at node ``i`` being
    that times ``1 + work[3, i]``. The solve runs in float64 whatever ``values`` and ``curve`` hold."""
    n = values.size
    z = np.empty(n)
    for i in range(n):
        z[i] = weights[i] * values[i]
    _substitute(work[0], work[1], work[2], z)
    rss, trace, used = 0.0, 0.0, 0.0
    for i in range(n):
        curve[i] = z[i]
        if weights[i] > 0:
            rss += weights[i] * (values[i] - z[i]) ** 2
            trace += weights[i] * work[3, i]
            used += 1.0
    return rss / max(used - trace, 1.0)


@numba.njit(parallel=True, cache=True)
def _smooth_all(times: Array, values: Array, weights: Array, lambdas: Array, asymmetric: bool, iterations: int,
                out: Array, variance: Array, chosen: Array) -> None:  # pragma: no cover - compiled
    p0, p1, p2 = penalty_bands(times)
    for s in numba.prange(values.shape[0]):
        kept = np.empty(times.size)
        work = np.empty((4, times.size))
        chosen[s] = fit_series(values[s], weights[s], lambdas, p0, p1, p2, asymmetric, iterations, out[s],
                               variance[s], kept, work)


class Smoothed(NamedTuple):
    curve: Array  # the fitted value at every time, gaps included (NaN where a series is too thin)
    sigma: Array  # one standard deviation of a new observation about the curve
    lam: Array  # each series' lambda


def scaled_times(times: ArrayLike, step: float | None = None) -> Array:
    """Times (days) in units of ``step`` (default: the median spacing), from the first; refuses unsorted ones."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or t.size < MIN_OBSERVATIONS or np.any(np.diff(t) <= 0):
        raise MusyqError(f"a series needs at least {MIN_OBSERVATIONS} strictly increasing times")
    scaled: Array = (t - t[0]) / float(step if step else np.median(np.diff(t)))
    return scaled


def smooth(
    times: ArrayLike, values: ArrayLike, weights: ArrayLike | None = None, lam: float | None = None,
    asymmetric: bool = True, robust: bool = True, step: float | None = None,
) -> Smoothed:
    """The smoothed, gap-filled curves of many series (last axis time) at their own times.

    ``values`` may hold NaN for gaps; ``weights`` (0-1, same shape) say how much each observation is trusted
    (quality flags). ``lam`` fixes the strength, else GCV picks it per series. ``robust`` down-weights
    outliers; ``asymmetric`` only those below the curve (vegetation indices, where clouds and aerosol only lower
    the signal).
    """
    y = np.asarray(values, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or y.shape[-1] != t.size:
        raise MusyqError(f"{t.size} times do not match series of length {y.shape[-1]}")
    scaled = scaled_times(t, step)
    w = np.ones_like(y) if weights is None else np.broadcast_to(np.asarray(weights, dtype=np.float64), y.shape)
    w = np.where(np.isfinite(y), np.clip(w, 0.0, 1.0), 0.0)
    flat_y = np.ascontiguousarray(np.nan_to_num(y).reshape(-1, t.size))
    flat_w = np.ascontiguousarray(w.reshape(-1, t.size))
    out, variance = np.empty_like(flat_y), np.empty_like(flat_y)
    chosen = np.empty(flat_y.shape[0])
    lambdas = LAMBDAS if lam is None else np.array([float(lam)])
    _smooth_all(scaled, flat_y, flat_w, lambdas, asymmetric, ROBUST_ROUNDS if robust else 0, out, variance, chosen)
    return Smoothed(out.reshape(y.shape), np.sqrt(variance).reshape(y.shape), chosen.reshape(y.shape[:-1]))
