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
from musyq.timeseries.whittaker import LAMBDAS, MIN_OBSERVATIONS, ROBUST_ROUNDS, fit_series, penalty_bands, refit_band

Array = NDArray[np.float64]

# Per output value: how it was made.
NOT_FILLABLE, OBSERVED, FROM_OWN_SERIES, FROM_SIMILAR_PIXELS = 0, 1, 2, 3
CLEAR = 0.25  # a fitted weight at least this high counts as a clear observation
FLAG_NAMES = {NOT_FILLABLE: "not fillable", OBSERVED: "observed", FROM_OWN_SERIES: "filled from own series",
              FROM_SIMILAR_PIXELS: "filled from similar pixels"}


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


@numba.njit(parallel=True, cache=True)
def _fit_pixels(
    nodes: Array, guide: Array, weights: Array, bands: Array, lambdas: Array, asymmetric: bool, iterations: int,
    guide_curve: Array, curves: Array, variances: Array, kept: Array,
) -> None:  # pragma: no cover - compiled
    """Robust GCV fit of each pixel's guide series, then every band with the guide's lambda and weights."""
    p0, p1, p2 = penalty_bands(nodes)
    n = nodes.size
    for p in numba.prange(guide.shape[0]):
        guide_variance = np.empty(n)
        lam = fit_series(guide[p], weights[p], lambdas, p0, p1, p2, asymmetric, iterations, guide_curve[p],
                         guide_variance, kept[p])
        for b in range(bands.shape[0]):
            if np.isnan(lam):
                curves[b, p] = np.nan
                variances[b, p] = np.nan
            else:
                refit_band(bands[b, p], kept[p], lam, p0, p1, p2, curves[b, p], variances[b, p])


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
    c = 0
    for qy in range(max(0, py - radius), min(ny, py + radius + 1)):
        for qx in range(max(0, px - radius), min(nx, px + radius + 1)):
            q = qy * nx + qx
            if q == p or np.isnan(guide_curve[q, 0]):
                continue
            total, common = 0.0, 0
            for i in range(kept.shape[1]):
                if kept[p, i] >= CLEAR and kept[q, i] >= CLEAR:
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
    node_days: Array, guide: Array, kept: Array, guide_curve: Array, curves: Array, variances: Array,
    bands: Array, out_nodes: NDArray[np.int64], window_start: Array, window_end: Array, ny: int, nx: int,
    max_gap: float, max_edge: float, radius: int, n_similar: int, min_common: int, keep_observed: bool,
    values: Array, sigma: Array, flag: NDArray[np.uint8],
) -> None:  # pragma: no cover - compiled
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
        score = np.empty(n_cand)
        index = np.empty(n_cand, dtype=np.int64)
        wanted = False  # neighbours are ranked only for a pixel that will use them
        for k in range(n_out):
            if not reach[p, k] or (seen[k] and kept[p, out_nodes[k]] < CLEAR):
                wanted = True
                break
        c = _rank_neighbours(p, ny, nx, radius, min_common, guide, kept, guide_curve, score, index) if wanted else 0
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
                    sigma[b, k, p] = np.sqrt(variances[b, p, j])
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
                continue
            flag[k, p] = FROM_SIMILAR_PIXELS
            for b in range(n_bands):
                total_w, mean, second, own_var = 0.0, 0.0, 0.0, 0.0
                for r in range(m):
                    q = index[chosen[r]]
                    offset, common = 0.0, 0
                    for i in range(node_days.size):
                        if kept[p, i] >= CLEAR and kept[q, i] >= CLEAR:
                            offset += bands[b, p, i] - curves[b, q, i]
                            common += 1
                    there = bands[b, q, j] if kept[q, j] >= CLEAR else curves[b, q, j]
                    estimate = there + offset / common
                    weight = 1.0 / (score[chosen[r]] ** 2 + 1e-6)
                    total_w += weight
                    mean += weight * estimate
                    second += weight * estimate * estimate
                    own_var += weight * variances[b, q, j]
                mean /= total_w
                spread = max(second / total_w - mean * mean, 0.0)
                values[b, k, p] = mean
                sigma[b, k, p] = np.sqrt(spread + own_var / total_w)


def merge_same_day(
    days: ArrayLike, bands: ArrayLike, clear: ArrayLike
) -> tuple[Array, Array, Array]:
    """One observation per day: the clear-weighted mean of same-day acquisitions (overlapping orbits, tiles),
    with the highest of their weights, so the smoother sees strictly increasing times."""
    t = np.asarray(days, dtype=np.float64)
    data = np.asarray(bands, dtype=np.float64)
    weight = np.asarray(clear, dtype=np.float64)
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


def reconstruct(
    days: ArrayLike, bands: ArrayLike, clear: ArrayLike, out_days: ArrayLike, guide: ArrayLike | None = None,
    options: ReconstructOptions = ReconstructOptions(), windows: ArrayLike | None = None,
) -> Reconstruction:
    """Reconstruct the block ``bands`` ``(band, time, y, x)`` observed on ``days`` at ``out_days``.

    ``clear`` ``(time, y, x)`` is the weight of each observation (0 masked, 1 clear; between for doubtful);
    ``guide`` ``(time, y, x)`` is the index that ranks outliers and similar pixels (default the first band).
    ``windows`` ``(out_time, 2)`` are the day ranges in which an output counts as observed (default: the output
    day itself).
    """
    t = np.asarray(days, dtype=np.float64)
    out = np.asarray(out_days, dtype=np.float64)
    data = np.asarray(bands, dtype=np.float64)
    if data.ndim != 4:
        raise MusyqError(f"a block is (band, time, y, x), not of shape {data.shape}")
    n_bands, n_time, ny, nx = data.shape
    weight = np.broadcast_to(np.asarray(clear, dtype=np.float64), (n_time, ny, nx))
    index = data[0] if guide is None else np.asarray(guide, dtype=np.float64)
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
    finite = np.isfinite(index) & np.all(np.isfinite(data), axis=0)
    w = np.where(finite, np.clip(weight, 0.0, 1.0), 0.0)

    def on_nodes(array: NDArray[np.float64]) -> Array:
        placed = np.zeros(array.shape[:-3] + (pixels, nodes.size))
        placed[..., obs_at] = np.moveaxis(array.reshape(array.shape[:-3] + (n_time, pixels)), -2, -1)
        return placed

    guide_nodes = on_nodes(np.where(w > 0, index, 0.0))
    weight_nodes = on_nodes(w)
    band_nodes = on_nodes(np.where(w > 0, data, 0.0))
    guide_curve = np.empty_like(guide_nodes)
    curves = np.empty_like(band_nodes)
    variances = np.empty_like(band_nodes)
    kept = np.empty_like(weight_nodes)
    lambdas = LAMBDAS if options.lam is None else np.array([options.lam])
    _fit_pixels((nodes - nodes[0]) / options.step, guide_nodes, weight_nodes, band_nodes, lambdas,
                options.asymmetric, ROBUST_ROUNDS if options.robust else 0, guide_curve, curves, variances, kept)
    values = np.full((n_bands, out.size, pixels), np.nan)
    sigma = np.full((n_bands, out.size, pixels), np.nan)
    flag = np.zeros((out.size, pixels), dtype=np.uint8)
    _fill(nodes, guide_nodes, kept, guide_curve, curves, variances, band_nodes, out_nodes, span[:, 0], span[:, 1],
          ny, nx, options.max_gap, options.max_edge, options.window, options.similar, options.min_common,
          options.keep_observed, values, sigma, flag)
    if options.minimum is not None:
        np.maximum(values, options.minimum, out=values)
    shape = (out.size, ny, nx)
    return Reconstruction(values.reshape((n_bands,) + shape).astype(np.float32),
                          sigma.reshape((n_bands,) + shape).astype(np.float32), flag.reshape(shape))
