"""Gap-free series from gappy ones: each pixel's own robust Whittaker curve where its series carries the gap,
else the curves of spectrally similar neighbours, with a flag and an uncertainty on every output value.

The pure function :func:`reconstruct` works on one block ``(band, time, y, x)``; all bands of a pixel share the
lambda and the robust weights fitted on a guide index (NDVI for reflectance), so the bands are reconstructed
jointly and a cloud the index exposes is ignored in every band.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from musyq.core.errors import MusyqError
from musyq.timeseries.whittaker import (BISQUARE, LAMBDAS, MIN_OBSERVATIONS, ROBUST_ROUNDS, factorize, fit_series,
                                        penalty_bands, refit_band)

Array = NDArray[np.float64]

# Per output value: how it was made.
NOT_FILLABLE, OBSERVED, FROM_OWN_SERIES, FROM_SIMILAR_PIXELS, FROM_REFERENCE = 0, 1, 2, 3, 4
CLEAR = 0.25  # a fitted weight at least this high counts as a clear observation
FLAG_NAMES = {NOT_FILLABLE: "not fillable", OBSERVED: "observed", FROM_OWN_SERIES: "filled from own series",
              FROM_SIMILAR_PIXELS: "filled from similar pixels", FROM_REFERENCE: "filled along the coarse reference"}
SHRINK = 1e-4  # ridge on the reference slope: a flat reference season guides nothing rather than anything
# the departure from the reference through a long gap is a slow bias, not the noise GCV would follow
STIFF = float(LAMBDAS[-1])


@dataclass(frozen=True)
class ReconstructOptions:
    """How far a pixel's own series may be trusted, and where to look for similar pixels."""

    lam: float | None = None  # fixed smoothing strength (in units of ``step``); None: GCV per pixel
    step: float = 16.0  # days per unit of time in the roughness penalty
    asymmetric: bool = True  # the guide is an index that clouds only lower
    robust: bool = True
    max_gap: float = 96.0  # days between the clear observations around a gap that the own curve may bridge
    max_edge: float = 24.0  # days the own curve may run beyond the first or last clear observation
    window: int = 7  # similar-pixel search radius in pixels
    similar: int = 10  # similar pixels per filled pixel
    min_common: int = 3  # clear dates in common with a candidate
    keep_observed: bool = False  # output observed values as they are rather than the curve
    minimum: float | None = None  # the variable's physical lower bound (0 for reflectance), outputs held to it

    def __post_init__(self) -> None:
        if self.lam is not None and not self.lam > 0:
            raise MusyqError(f"the smoothing strength must be positive, not {self.lam}")
        for name in ("step", "max_gap"):
            if not getattr(self, name) > 0:
                raise MusyqError(f"{name} must be positive, not {getattr(self, name)}")
        if self.window < 0 or self.similar < 1 or self.min_common < 1:
            raise MusyqError("the similar-pixel window, count and common dates must be positive")


class Reconstruction(NamedTuple):
    values: NDArray[np.float32]  # (band, out_time, y, x), NaN where not fillable
    sigma: NDArray[np.float32]  # one standard deviation of each value
    flag: NDArray[np.uint8]  # (out_time, y, x), one of the flag codes


class Reference(NamedTuple):
    """A coarse reference series on the block's grid: smooth curves sampled on ``days``, NaN where absent."""

    days: NDArray[np.float64]  # (reference_time,)
    guide: NDArray[np.floating]  # (reference_time, y, x), the guide index's curve
    bands: NDArray[np.floating]  # (band, reference_time, y, x), each band's curve (NaN: none for that band)


@numba.njit(cache=True)
def _detrend(values: NDArray[np.floating], weights: Array, reference: Array,
             residual: Array) -> tuple[float, float]:  # pragma: no cover - compiled
    """The weighted regression ``values ~ a + b reference`` and its residual at the weighted nodes."""
    total = mean_x = mean_y = 0.0
    for i in range(values.size):
        if weights[i] > 0:
            total += weights[i]
            mean_x += weights[i] * reference[i]
            mean_y += weights[i] * values[i]
    if total <= 0:
        residual[:] = 0.0
        return 0.0, 0.0
    mean_x /= total
    mean_y /= total
    cov = var = 0.0
    for i in range(values.size):
        if weights[i] > 0:
            cov += weights[i] * (reference[i] - mean_x) * (values[i] - mean_y)
            var += weights[i] * (reference[i] - mean_x) ** 2
    slope = cov / (var + SHRINK * total)
    intercept = mean_y - slope * mean_x
    for i in range(values.size):
        residual[i] = values[i] - intercept - slope * reference[i] if weights[i] > 0 else 0.0
    return intercept, slope


@numba.njit(cache=True)
def _screen(values: Array, weights: Array, reference: Array, asymmetric: bool,
            screened: Array) -> None:  # pragma: no cover - compiled
    """Observations far from what the reference predicts for the pixel (beyond Tukey's bisquare reach of the
    regression's robust residual scale; only below it for an index) are dropped before the fit."""
    n = values.size
    residual = np.empty(n)
    _detrend(values, weights, reference, residual)
    kept = np.empty(n)
    m = 0
    for i in range(n):
        screened[i] = weights[i]
        if weights[i] > 0:
            kept[m] = residual[i]
            m += 1
    if m < MIN_OBSERVATIONS:
        return
    centre = np.median(kept[:m])
    scale = BISQUARE * max(1.4826 * np.median(np.abs(kept[:m] - centre)), 1e-3)
    for i in range(n):
        u = (residual[i] - centre) / scale
        if weights[i] > 0 and abs(u) >= 1.0 and not (asymmetric and u > 0):
            screened[i] = 0.0


@numba.njit(cache=True)
def _along(values: NDArray[np.floating], weights: Array, reference: Array, stiff: Array,
           out_nodes: NDArray[np.int64], along: NDArray[np.float32],
           variance: Array) -> float:  # pragma: no cover - compiled
    """Values at the output nodes that follow the shape of ``reference`` (read where ``weights`` are positive
    and at the output nodes): the regression on it plus a stiff curve of the departure from it, with that
    curve's predictive variance; returns the regression's slope."""
    residual = np.empty(values.size)
    intercept, slope = _detrend(values, weights, reference, residual)
    spread = refit_band(residual, weights, stiff, residual)
    for k in range(out_nodes.size):
        j = out_nodes[k]
        along[k] = residual[j] + intercept + slope * reference[j]
        variance[k] = spread * (1.0 + stiff[3, j])
    return slope


@numba.njit(parallel=True, cache=True)
def _fit_pixels(
    nodes: Array, guide: Array, weights: Array, bands: NDArray[np.float32], lambdas: Array, asymmetric: bool,
    iterations: int, out_nodes: NDArray[np.int64], reference_guide: Array, reference_bands: Array,
    guide_curve: Array, curves: NDArray[np.float32], variances: Array, kept: Array, guided: NDArray[np.bool_],
    along: NDArray[np.float32], along_variances: Array,
) -> None:  # pragma: no cover - compiled
    """Robust GCV fit of each pixel's guide series, then every band on the guide's factorization (its lambda
    and weights); ``variances`` only at the output nodes, the one place they are read.

    Where a reference covers the pixel (``reference_guide`` finite, its ends held), observations it shows as
    outliers are dropped first, and ``along`` holds each band's values that follow the reference's shape (its
    own curve where it has one, else the guide's through the pixel's spectral relation) for the gaps the
    pixel's own curve cannot bridge.
    """
    p0, p1, p2 = penalty_bands(nodes)
    n = nodes.size
    for p in numba.prange(guide.shape[0]):
        guide_variance = np.empty(n)
        work = np.empty((4, n))
        covered = reference_guide.shape[0] == guide.shape[0] and np.all(np.isfinite(reference_guide[p]))
        start = weights[p]
        if covered:
            start = np.empty(n)
            _screen(guide[p], weights[p], reference_guide[p], asymmetric, start)
        lam = fit_series(guide[p], start, lambdas, p0, p1, p2, asymmetric, iterations, guide_curve[p],
                         guide_variance, kept[p], work)
        guided[p] = covered and not np.isnan(lam)
        for b in range(bands.shape[0]):
            if np.isnan(lam):
                curves[b, p] = np.nan
                variances[b, p] = np.nan
                continue
            residual_variance = refit_band(bands[b, p], kept[p], work, curves[b, p])
            for k in range(out_nodes.size):
                variances[b, p, k] = residual_variance * (1.0 + work[3, out_nodes[k]])
        if guided[p]:
            stiff = np.empty((4, n))
            factorize(kept[p], STIFF, p0, p1, p2, stiff)
            guide_along = np.empty(out_nodes.size, dtype=np.float32)
            guide_along_variance = np.empty(out_nodes.size)
            _along(guide[p], kept[p], reference_guide[p], stiff, out_nodes, guide_along, guide_along_variance)
            # a band without a reference of its own follows the guide through the pixel's own spectral
            # relation: regressed on its observed guide, predicted from the guide's values along the reference
            regressor = np.zeros(n)
            for i in range(n):
                if kept[p, i] > 0:
                    regressor[i] = guide[p, i]
            for k in range(out_nodes.size):
                if kept[p, out_nodes[k]] <= 0:
                    regressor[out_nodes[k]] = guide_along[k]
            for b in range(bands.shape[0]):
                if np.all(np.isfinite(reference_bands[b, p])):
                    _along(bands[b, p], kept[p], reference_bands[b, p], stiff, out_nodes, along[b, p],
                           along_variances[b, p])
                else:
                    slope = _along(bands[b, p], kept[p], regressor, stiff, out_nodes, along[b, p],
                                   along_variances[b, p])
                    for k in range(out_nodes.size):
                        along_variances[b, p, k] += slope * slope * guide_along_variance[k]


@numba.njit(cache=True)
def _own_reach(node_days: Array, kept: Array, out_nodes: NDArray[np.int64], max_gap: float, max_edge: float,
               reach: NDArray[np.bool_]) -> None:  # pragma: no cover - compiled
    """Whether a pixel's own curve may stand at each output node: clear observations close enough on both
    sides of the gap (or within ``max_edge`` days before the first / after the last observation)."""
    n = node_days.size
    for k in range(out_nodes.size):
        j = out_nodes[k]
        before, after = -1, -1
        for i in range(j, -1, -1):
            if kept[i] >= CLEAR:
                before = i
                break
        for i in range(j, n):
            if kept[i] >= CLEAR:
                after = i
                break
        if before >= 0 and after >= 0:
            reach[k] = node_days[after] - node_days[before] <= max_gap
        elif before >= 0:
            reach[k] = node_days[j] - node_days[before] <= max_edge
        elif after >= 0:
            reach[k] = node_days[after] - node_days[j] <= max_edge
        else:
            reach[k] = False


@numba.njit(cache=True)
def _rank_neighbours(p: int, ny: int, nx: int, radius: int, min_common: int, guide: Array, kept: Array,
                     guide_curve: Array, score: Array, index: NDArray[np.int64]) -> int:  # pragma: no cover
    """Neighbours with a fitted series, by the guide's RMS difference from pixel ``p`` on the dates both
    observed clear (best first); returns how many."""
    py, px = p // nx, p % nx
    own = np.empty(kept.shape[1], dtype=np.int64)  # the nodes where p is clear: the only ones compared
    n_own = 0
    for i in range(kept.shape[1]):
        if kept[p, i] >= CLEAR:
            own[n_own] = i
            n_own += 1
    c = 0
    for qy in range(max(0, py - radius), min(ny, py + radius + 1)):
        for qx in range(max(0, px - radius), min(nx, px + radius + 1)):
            q = qy * nx + qx
            if q == p or np.isnan(guide_curve[q, 0]):
                continue
            total, common = 0.0, 0
            for m in range(n_own):
                i = own[m]
                if kept[q, i] >= CLEAR:
                    total += (guide[p, i] - guide[q, i]) ** 2
                    common += 1
            if common >= min_common:
                score[c] = np.sqrt(total / common)
                index[c] = q
                c += 1
    order = np.argsort(score[:c])
    score[:c] = score[:c][order]
    index[:c] = index[:c][order]
    return c


@numba.njit(parallel=True, cache=True)
def _fill(
    node_days: Array, guide: Array, kept: Array, guide_curve: Array, curves: NDArray[np.float32], variances: Array,
    bands: NDArray[np.float32], out_nodes: NDArray[np.int64], window_start: Array, window_end: Array, ny: int, nx: int,
    max_gap: float, max_edge: float, radius: int, n_similar: int, min_common: int, keep_observed: bool,
    guided: NDArray[np.bool_], covered: NDArray[np.bool_], along: NDArray[np.float32], along_variances: Array,
    values: NDArray[np.float32], sigma: NDArray[np.float32], flag: NDArray[np.uint8],
) -> None:  # pragma: no cover - compiled
    """Each output value from the pixel's own curve where its observations reach, else from similar
    neighbours, else along the coarse reference where the pixel has one."""
    n_out = out_nodes.size
    n_bands = curves.shape[0]
    reach = np.zeros((ny * nx, n_out), dtype=np.bool_)
    for p in numba.prange(ny * nx):
        if not np.isnan(guide_curve[p, 0]):
            _own_reach(node_days, kept[p], out_nodes, max_gap, max_edge, reach[p])
    n_cand = (2 * radius + 1) ** 2
    seen = np.zeros(n_out, dtype=np.bool_)  # output nodes that some pixel of the block observed clear
    for k in range(n_out):
        for q in range(ny * nx):
            if kept[q, out_nodes[k]] >= CLEAR:
                seen[k] = True
                break
    for p in numba.prange(ny * nx):
        values[:, :, p] = np.nan
        sigma[:, :, p] = np.nan
        score = np.empty(n_cand)
        index = np.empty(n_cand, dtype=np.int64)
        wanted = False  # neighbours are ranked only for a pixel that will use them
        for k in range(n_out):
            if not reach[p, k] or (seen[k] and kept[p, out_nodes[k]] < CLEAR):
                wanted = True
                break
        c = _rank_neighbours(p, ny, nx, radius, min_common, guide, kept, guide_curve, score, index) if wanted else 0
        offsets = np.full((c, n_bands), np.nan)
        for k in range(n_out):
            j = out_nodes[k]
            observed = False
            for i in range(node_days.size):
                if window_start[k] <= node_days[i] < window_end[k] and kept[p, i] >= CLEAR:
                    observed = True
                    break
            if reach[p, k]:
                flag[k, p] = OBSERVED if observed else FROM_OWN_SERIES
                exact = kept[p, j] >= CLEAR
                for b in range(n_bands):
                    values[b, k, p] = bands[b, p, j] if exact and keep_observed else curves[b, p, j]
                    sigma[b, k, p] = np.sqrt(variances[b, p, k])
                if exact:
                    continue
                # the departure of this date from the curves, as the most similar neighbours seen clear show it
                for b in range(n_bands):
                    total_w, departure, m = 0.0, 0.0, 0
                    for r in range(c):
                        q = index[r]
                        if kept[q, j] >= CLEAR:
                            weight = 1.0 / (score[r] ** 2 + 1e-6)
                            departure += weight * (bands[b, q, j] - curves[b, q, j])
                            total_w += weight
                            m += 1
                            if m == n_similar:
                                break
                    if m > 0:
                        values[b, k, p] += departure / total_w
                continue
            flag[k, p] = NOT_FILLABLE
            # the neighbours' values (observed, else curve), shifted by their mean difference from this pixel
            chosen = np.empty(n_similar, dtype=np.int64)
            m = 0
            for r in range(c):
                if reach[index[r], k]:
                    chosen[m] = r
                    m += 1
                    if m == n_similar:
                        break
            if m == 0:
                if guided[p] and covered[p, j]:
                    flag[k, p] = FROM_REFERENCE
                    for b in range(n_bands):
                        values[b, k, p] = along[b, p, k]
                        sigma[b, k, p] = np.sqrt(along_variances[b, p, k])
                continue
            flag[k, p] = FROM_SIMILAR_PIXELS
            for r in range(m):  # each neighbour's mean offset from this pixel, once for all output dates
                if not np.isnan(offsets[chosen[r], 0]):
                    continue
                q = index[chosen[r]]
                for b in range(n_bands):
                    offset, common = 0.0, 0
                    for i in range(node_days.size):
                        if kept[p, i] >= CLEAR and kept[q, i] >= CLEAR:
                            offset += bands[b, p, i] - curves[b, q, i]
                            common += 1
                    offsets[chosen[r], b] = offset / common
            for b in range(n_bands):
                total_w, mean, second, own_var = 0.0, 0.0, 0.0, 0.0
                for r in range(m):
                    q = index[chosen[r]]
                    there = bands[b, q, j] if kept[q, j] >= CLEAR else curves[b, q, j]
                    estimate = there + offsets[chosen[r], b]
                    weight = 1.0 / (score[chosen[r]] ** 2 + 1e-6)
                    total_w += weight
                    mean += weight * estimate
                    second += weight * estimate * estimate
                    own_var += weight * variances[b, q, k]
                mean /= total_w
                spread = max(second / total_w - mean * mean, 0.0)
                values[b, k, p] = mean
                sigma[b, k, p] = np.sqrt(spread + own_var / total_w)


@numba.njit(parallel=True, cache=True)
def _on_nodes(data: NDArray[np.floating], guide: NDArray[np.floating], weight: NDArray[np.float32],
              obs_at: NDArray[np.int64], guide_nodes: Array, weight_nodes: Array,
              band_nodes: NDArray[np.float32]) -> None:  # pragma: no cover - compiled
    """Each pixel's series laid out on the nodes (observation and output days), in one pass: weight 0 (and
    value 0) wherever a band or the guide is missing or the observation is masked."""
    n_bands, n_time, pixels = data.shape
    for p in numba.prange(pixels):
        guide_nodes[p] = 0.0
        weight_nodes[p] = 0.0
        band_nodes[:, p] = 0.0
        for t in range(n_time):
            w = min(max(np.float64(weight[t, p]), 0.0), 1.0)
            ok = w > 0 and np.isfinite(guide[t, p])
            for b in range(n_bands):
                ok = ok and np.isfinite(data[b, t, p])
            if not ok:
                continue
            node = obs_at[t]
            weight_nodes[p, node] = w
            guide_nodes[p, node] = guide[t, p]
            for b in range(n_bands):
                band_nodes[b, p, node] = data[b, t, p]


def merge_same_day(
    days: ArrayLike, bands: ArrayLike, clear: ArrayLike
) -> tuple[Array, NDArray[np.floating], NDArray[np.floating]]:
    """One observation per day: the clear-weighted mean of same-day acquisitions (overlapping orbits, tiles),
    with the highest of their weights, so the smoother sees strictly increasing times."""
    t = np.asarray(days, dtype=np.float64)
    data = np.asarray(bands)
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
    weight = np.asarray(clear, dtype=np.float32)
    if np.all(np.diff(t) > 0):
        return t, data, weight
    unique, inverse = np.unique(t, return_inverse=True)
    if unique.size == t.size:
        order = np.argsort(t)
        return t[order], data[:, order], weight[order]
    w = np.where(np.isfinite(data).all(axis=0), weight, 0.0)
    shape = (unique.size,) + weight.shape[1:]
    total, best = np.zeros(shape), np.zeros(shape)
    summed = np.zeros((data.shape[0],) + shape)
    np.add.at(total, inverse, w)
    np.maximum.at(best, inverse, w)
    for band in range(data.shape[0]):
        np.add.at(summed[band], inverse, np.where(w > 0, data[band], 0.0) * w)
    with np.errstate(invalid="ignore", divide="ignore"):
        merged = np.where(total > 0, summed / total, np.nan)
    return unique, merged, best


def _held(curves: Array) -> Array:
    """Curves ``(..., node)`` with their NaN ends held at the nearest value (a coarse pixel's curve stops a
    little beyond its observations; the departure from it then carries the fit)."""
    index = np.arange(curves.shape[-1])
    finite = np.isfinite(curves)
    forward = np.maximum.accumulate(np.where(finite, index, 0), axis=-1)
    backward = np.flip(np.minimum.accumulate(np.flip(np.where(finite, index, index[-1]), -1), axis=-1), -1)
    first = np.where(finite.any(axis=-1, keepdims=True), np.argmax(finite, axis=-1)[..., None], 0)
    source = np.where(index < first, backward, forward)
    return np.take_along_axis(curves, source, axis=-1)


def _reference_on_nodes(reference: Reference | None, nodes: Array, n_bands: int,
                        shape: tuple[int, int]) -> tuple[Array, Array, NDArray[np.bool_]]:
    """The reference's curves interpolated linearly in time onto the nodes, ``(pixel, node)`` and
    ``(band, pixel, node)``, their ends held, and where the guide's curve really was. Without a reference, empty
    arrays that guide nothing."""
    if reference is None:
        return np.empty((0, nodes.size)), np.empty((n_bands, 0, nodes.size)), np.zeros((0, nodes.size), bool)
    days = np.asarray(reference.days, dtype=np.float64)
    guide = np.asarray(reference.guide, dtype=np.float64)
    bands = np.asarray(reference.bands, dtype=np.float64)
    if guide.shape != (days.size,) + shape or bands.shape != (n_bands, days.size) + shape:
        raise MusyqError(f"a reference of shape {guide.shape} and {bands.shape} does not match the block "
                         f"({n_bands} bands, {shape[0]} x {shape[1]} px) on its {days.size} days")
    if days.size < 2 or np.any(np.diff(days) <= 0):
        raise MusyqError("a reference needs at least two strictly increasing days")
    upper = np.clip(np.searchsorted(days, nodes), 1, days.size - 1)
    fraction = (nodes - days[upper - 1]) / (days[upper] - days[upper - 1])
    fraction[(nodes < days[0]) | (nodes > days[-1])] = np.nan

    def on_nodes(curves: Array) -> Array:
        flat = curves.reshape(curves.shape[:-2] + (-1,))
        lower = flat[..., upper - 1, :]
        placed = lower + fraction[:, None] * (flat[..., upper, :] - lower)
        return np.ascontiguousarray(np.swapaxes(placed, -1, -2))

    guide_nodes = on_nodes(guide)
    return _held(guide_nodes), _held(on_nodes(bands)), np.isfinite(guide_nodes)


def reconstruct(
    days: ArrayLike, bands: ArrayLike, clear: ArrayLike, out_days: ArrayLike, guide: ArrayLike | None = None,
    options: ReconstructOptions = ReconstructOptions(), windows: ArrayLike | None = None,
    reference: Reference | None = None,
) -> Reconstruction:
    """Reconstruct the block ``bands`` ``(band, time, y, x)`` observed on ``days`` at ``out_days``.

    ``clear`` ``(time, y, x)`` is the weight of each observation (0 masked, 1 clear; between for doubtful);
    ``guide`` ``(time, y, x)`` is the index that ranks outliers and similar pixels (default the first band).
    ``windows`` ``(out_time, 2)`` are the day ranges in which an output counts as observed (default: the output
    day itself). ``reference`` (a coarse series of the same place) shapes the curves and fills what neither the
    pixel nor its neighbours can.
    """
    t = np.asarray(days, dtype=np.float64)
    out = np.asarray(out_days, dtype=np.float64)
    data = np.asarray(bands)
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
    if data.ndim != 4:
        raise MusyqError(f"a block is (band, time, y, x), not of shape {data.shape}")
    n_bands, n_time, ny, nx = data.shape
    weight = np.ascontiguousarray(np.broadcast_to(np.asarray(clear, dtype=np.float32), (n_time, ny, nx)))
    index = data[0] if guide is None else np.asarray(guide, dtype=data.dtype)
    if t.shape != (n_time,) or index.shape != (n_time, ny, nx):
        raise MusyqError(f"{t.size} dates do not match a block of {n_time} dates")
    if n_time < MIN_OBSERVATIONS or np.any(np.diff(t) <= 0):
        raise MusyqError(f"a series needs at least {MIN_OBSERVATIONS} dates, strictly increasing")
    if out.ndim != 1 or out.size == 0:
        raise MusyqError("no output dates")
    nodes = np.union1d(t, out)
    obs_at = np.searchsorted(nodes, t)
    out_nodes = np.searchsorted(nodes, out).astype(np.int64)
    if windows is None:
        span = np.stack([out, out + 1.0], axis=1)
    else:
        span = np.asarray(windows, dtype=np.float64).reshape(out.size, 2)
    pixels = ny * nx
    guide_nodes = np.empty((pixels, nodes.size))
    weight_nodes = np.empty((pixels, nodes.size))
    band_nodes = np.empty((n_bands, pixels, nodes.size), dtype=np.float32)  # the largest arrays: float32
    _on_nodes(data.reshape(n_bands, n_time, pixels), index.reshape(n_time, pixels),
              weight.reshape(n_time, pixels), obs_at, guide_nodes, weight_nodes, band_nodes)
    reference_guide, reference_bands, covered = _reference_on_nodes(reference, nodes, n_bands, (ny, nx))
    guided = np.zeros(pixels, dtype=np.bool_)
    along_shape = (n_bands, pixels if reference is not None else 0, out.size)
    along = np.full(along_shape, np.nan, dtype=np.float32)
    along_variances = np.full(along_shape, np.nan)
    guide_curve = np.empty_like(guide_nodes)
    curves = np.empty_like(band_nodes)
    variances = np.empty(band_nodes.shape[:-1] + (out.size,))
    kept = np.empty_like(weight_nodes)
    lambdas = LAMBDAS if options.lam is None else np.array([options.lam])
    _fit_pixels((nodes - nodes[0]) / options.step, guide_nodes, weight_nodes, band_nodes, lambdas,
                options.asymmetric, ROBUST_ROUNDS if options.robust else 0, out_nodes, reference_guide,
                reference_bands, guide_curve, curves, variances, kept, guided, along, along_variances)
    values = np.empty((n_bands, out.size, pixels), dtype=np.float32)
    sigma = np.empty((n_bands, out.size, pixels), dtype=np.float32)
    flag = np.zeros((out.size, pixels), dtype=np.uint8)
    _fill(nodes, guide_nodes, kept, guide_curve, curves, variances, band_nodes, out_nodes, span[:, 0], span[:, 1],
          ny, nx, options.max_gap, options.max_edge, options.window, options.similar, options.min_common,
          options.keep_observed, guided, covered, along, along_variances, values, sigma, flag)
    if options.minimum is not None:
        np.maximum(values, options.minimum, out=values)
    shape = (out.size, ny, nx)
    return Reconstruction(values.reshape((n_bands,) + shape), sigma.reshape((n_bands,) + shape), flag.reshape(shape))
