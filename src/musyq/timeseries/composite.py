"""Composites of a period: one observation (or statistic) per pixel out of the clear ones, by a method from a
registry: FORCE-style best available pixel, median, medoid, maximum NDVI, and HLS-style nearest-median NDVI.

Each method is a pure function of one block: reflectance ``(band, time, y, x)`` with its quality codes, days,
angles and sensors, returning the chosen observation per pixel (or the values themselves for the median).
"""

from __future__ import annotations

import calendar
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from musyq.core.errors import MusyqError
from musyq.timeseries.methods import METHODS

CLEAR, WATER, CLOUD_SHADOW, SNOW, CLOUD = 1, 2, 3, 4, 5
NO_CHOICE = -1


@dataclass(frozen=True)
class BapWeights:
    """Weights and requirements of the parametric scores (Frantz et al. 2017; FORCE defaults)."""

    day: float = 1.0  # closeness to the target day (Gaussian, 0.01 at the period's edges)
    cloud: float = 0.4  # distance to the next cloud or shadow, sigmoid reaching 0.5 at cloud_distance / 2
    haze: float = 0.3  # haze-optimized transform blue - 0.5 red - 0.08 (reflectance), sigmoid at haze_limit
    view: float = 0.0  # view zenith, sigmoid reaching 0.5 at view_limit / 2
    sensor: float = 0.0  # the user's sensor preference
    cloud_distance: float = 3000.0  # metres (FORCE DREQ)
    haze_limit: float = -0.015  # FORCE HREQ -150 on reflectance x 10000
    view_limit: float = 7.5  # degrees (FORCE VREQ)
    preference: dict[str, float] = field(default_factory=dict)  # sensor id -> 0..1, others 1


class Block(NamedTuple):
    """What the methods see of one spatial block of one period."""

    days: NDArray[np.float64]  # (time,) days since 1970-01-01
    bands: NDArray[np.float32]  # (band, time, y, x) reflectance, NaN fill
    band_names: tuple[str, ...]
    quality: NDArray[np.uint8]  # (time, y, x)
    view_zenith: NDArray[np.float32]  # (time, y, x)
    sensors: tuple[str, ...]  # (time,)
    pixel_size: float  # metres
    sigma: NDArray[np.float32] | None = None  # (band, time, y, x) the SR uncertainty, where the ARD carries it


class Composite(NamedTuple):
    values: NDArray[np.float32]  # (band, y, x)
    day: NDArray[np.float64]  # chosen day (days since 1970-01-01), NaN where none or a statistic
    clear_count: NDArray[np.uint16]  # clear observations
    sensor: NDArray[np.int16]  # index into Block.sensors, -1 where none or a statistic
    sigma: NDArray[np.float32] | None = None  # (band, y, x): the chosen observation's, or the median's


def usable(quality: NDArray[np.uint8], bands: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Clear land or water with every band present; where a pixel has none in the period, its snow."""
    present = np.all(np.isfinite(bands), axis=0)
    clear = np.isin(quality, (CLEAR, WATER)) & present
    snow = (quality == SNOW) & present
    found: NDArray[np.bool_] = clear | (snow & ~clear.any(axis=0))
    return found


def _band(block: Block, name: str) -> NDArray[np.float32] | None:
    return block.bands[block.band_names.index(name)] if name in block.band_names else None


def _ndvi(block: Block) -> NDArray[np.float32]:
    red, nir = _band(block, "red"), _band(block, "nir")
    if red is None or nir is None:
        raise MusyqError("this composite method needs the red and nir bands")
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi: NDArray[np.float32] = (nir - red) / (nir + red)
    return ndvi


def _pick(block: Block, candidates: NDArray[np.bool_], score: NDArray[np.floating]) -> NDArray[np.int64]:
    """Per pixel the time index of the highest score among the candidates, -1 where none."""
    masked = np.where(candidates, score, -np.inf)
    best: NDArray[np.int64] = np.argmax(masked, axis=0)
    best[~candidates.any(axis=0)] = NO_CHOICE
    return best


@numba.njit(cache=True)
def _sigmoid_at(x: float, centre: float, width: float) -> float:  # pragma: no cover - compiled
    return float(1.0 / (1.0 + np.exp(min(max(10.0 / width * (x - centre), -50.0), 50.0))))


@numba.njit(parallel=True, cache=True)
def _best_available(
    candidates: NDArray[np.bool_], day: NDArray[np.float64], preference: NDArray[np.float64],
    distance: NDArray[np.float32], blue: NDArray[np.float32], red: NDArray[np.float32],
    view: NDArray[np.float32], weights: NDArray[np.float64], limits: NDArray[np.float64],
    out: NDArray[np.int64],
) -> None:  # pragma: no cover - compiled
    """Per pixel the candidate with the highest weighted score, in one pass without temporaries; ``weights``
    are (day, cloud, haze, view, sensor) normalized, ``limits`` (cloud distance, haze limit, view limit)."""
    n_time, n_pixels = candidates.shape
    for p in numba.prange(n_pixels):
        best, best_score = NO_CHOICE, -np.inf
        for t in range(n_time):
            if not candidates[t, p]:
                continue
            score = weights[0] * day[t] + weights[4] * preference[t]
            if weights[1] > 0:
                score += weights[1] * (1.0 - _sigmoid_at(distance[t, p], limits[0] / 2, limits[0]))
            if weights[2] > 0:
                score += weights[2] * _sigmoid_at(blue[t, p] - 0.5 * red[t, p] - 0.08, limits[1], 0.02)
            if weights[3] > 0:
                angle = view[t, p] if np.isfinite(view[t, p]) else 0.0
                score += weights[3] * _sigmoid_at(angle, limits[2] / 2, limits[2])
            if score > best_score:
                best, best_score = t, score
        out[p] = best


def bap(block: Block, candidates: NDArray[np.bool_], target: float, half_width: float,
        weights: BapWeights) -> NDArray[np.int64]:
    """FORCE's parametric best available pixel: weighted mean of day, cloud-distance, haze, view and sensor
    scores; the highest-scoring clear observation wins."""
    n_time = block.quality.shape[0]
    sigma = max(half_width, 1.0) / np.sqrt(-2.0 * np.log(0.01 / 0.99))
    day = np.exp(-((block.days - target) ** 2) / (2 * sigma**2))
    flat = (n_time, -1)
    distance = np.full((n_time, 1), np.inf, dtype=np.float32)
    if weights.cloud > 0:
        distance = np.empty(block.quality.shape, dtype=np.float32)
        for t in range(n_time):
            cloudy = (block.quality[t] == CLOUD) | (block.quality[t] == CLOUD_SHADOW)
            distance[t] = (ndimage.distance_transform_edt(~cloudy) * block.pixel_size if cloudy.any()
                           else np.inf)
    blue, red = _band(block, "blue"), _band(block, "red")
    haze = weights.haze if blue is not None and red is not None else 0.0
    empty = np.zeros((n_time, 1), dtype=np.float32)
    preference = np.array([weights.preference.get(s, 1.0) for s in block.sensors], dtype=np.float64)
    parts = np.array([weights.day, weights.cloud, haze, weights.view, weights.sensor], dtype=np.float64)
    out = np.empty(candidates[0].size, dtype=np.int64)
    _best_available(np.ascontiguousarray(candidates.reshape(flat)), day, preference,
                    np.ascontiguousarray(distance.reshape(flat)),
                    np.ascontiguousarray(blue.reshape(flat)) if blue is not None and haze else empty,
                    np.ascontiguousarray(red.reshape(flat)) if red is not None and haze else empty,
                    np.ascontiguousarray(block.view_zenith.reshape(flat)) if weights.view > 0 else empty,
                    parts / parts.sum(), np.array([weights.cloud_distance, weights.haze_limit, weights.view_limit]),
                    out)
    return out.reshape(candidates.shape[1:])


def max_ndvi(block: Block, candidates: NDArray[np.bool_]) -> NDArray[np.int64]:
    """The greenest clear observation: clouds and shadows lower NDVI, so it avoids what the mask missed."""
    return _pick(block, candidates, _ndvi(block))


def nearest_median(block: Block, candidates: NDArray[np.bool_]) -> NDArray[np.int64]:
    """The clear observation whose NDVI is nearest the pixel's median NDVI (HLS-style)."""
    ndvi = np.where(candidates, _ndvi(block), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels without a clear observation
        median = np.nanmedian(ndvi, axis=0)
    return _pick(block, candidates, -np.abs(ndvi - median))


@numba.njit(parallel=True, cache=True)
def _medoid(bands: NDArray[np.float32], candidates: NDArray[np.bool_], out: NDArray[np.int64]) -> None:
    n_bands, n_time, n_pixels = bands.shape
    for p in numba.prange(n_pixels):
        best, best_sum = -1, np.inf
        for i in range(n_time):
            if not candidates[i, p]:
                continue
            total = 0.0
            for j in range(n_time):
                if candidates[j, p]:
                    d = 0.0
                    for b in range(n_bands):
                        d += (bands[b, i, p] - bands[b, j, p]) ** 2
                    total += np.sqrt(d)
            if total < best_sum:
                best, best_sum = i, total
        out[p] = best


@numba.njit(cache=True)
def _select(values: NDArray[np.float32], m: int, k: int) -> float:  # pragma: no cover - compiled
    """The ``k``-th smallest of ``values[:m]`` by Hoare's selection, leaving every later element no smaller."""
    lo, hi = 0, m - 1
    while lo < hi:
        pivot = values[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return float(values[k])


@numba.njit(parallel=True, cache=True)
def _median(bands: NDArray[np.float32], candidates: NDArray[np.bool_],
            out: NDArray[np.float32]) -> None:  # pragma: no cover - compiled
    """Per band the median of each pixel's clear values, by selection rather than a sort."""
    n_bands, n_time, n_pixels = bands.shape
    for p in numba.prange(n_pixels):
        picked = np.empty(n_time, dtype=np.float32)
        for b in range(n_bands):
            m = 0
            for t in range(n_time):
                if candidates[t, p]:
                    picked[m] = bands[b, t, p]
                    m += 1
            if m == 0:
                out[b, p] = np.nan
                continue
            lower = _select(picked, m, (m - 1) // 2)
            if m % 2:
                out[b, p] = lower
            else:  # the upper middle value is the smallest of those the selection left after the lower one
                upper = picked[m // 2]
                for i in range(m // 2 + 1, m):
                    upper = min(upper, picked[i])
                out[b, p] = 0.5 * (lower + upper)


def medoid(block: Block, candidates: NDArray[np.bool_]) -> NDArray[np.int64]:
    """The clear observation with the least summed spectral distance to the others: a real spectrum that is
    typical of the period."""
    n_bands, n_time = block.bands.shape[:2]
    out = np.empty(candidates[0].size, dtype=np.int64)
    _medoid(np.ascontiguousarray(block.bands.reshape(n_bands, n_time, -1)),
            np.ascontiguousarray(candidates.reshape(n_time, -1)), out)
    return out.reshape(candidates.shape[1:])


Selector = Callable[[Block, NDArray[np.bool_]], NDArray[np.int64]]
SELECTORS: dict[str, Selector] = {"medoid": medoid, "maxndvi": max_ndvi, "nearest-median": nearest_median}


def composite(block: Block, method: str, target: float, half_width: float,
              weights: BapWeights | None = None) -> Composite:
    """The composite of one block by ``method`` (one of ``METHODS``)."""
    if method not in METHODS:
        raise MusyqError(f"unknown composite method {method!r}; choose one of {', '.join(METHODS)}")
    candidates = usable(block.quality, block.bands)
    clear = np.isin(block.quality, (CLEAR, WATER)) & np.all(np.isfinite(block.bands), axis=0)
    count = clear.sum(axis=0)
    shape = block.quality.shape[1:]
    if method == "median":
        n_bands, n_time = block.bands.shape[:2]
        values = np.empty((n_bands, candidates[0].size), dtype=np.float32)
        _median(np.ascontiguousarray(block.bands.reshape(n_bands, n_time, -1)),
                np.ascontiguousarray(candidates.reshape(n_time, -1)), values)
        values = values.reshape((n_bands,) + shape)
        sigma = None
        if block.sigma is not None:
            # the median of n values with errors of variance v has, for normal errors and large n, the
            # variance (pi / 2) v / n
            with np.errstate(invalid="ignore", divide="ignore"):
                variance = np.where(candidates[None], block.sigma.astype(np.float32) ** 2, 0).sum(axis=1)
                taken = candidates.sum(axis=0)
                sigma = np.where(taken > 0, np.sqrt(np.pi / 2 * variance / np.maximum(taken, 1) ** 2), np.nan)
            sigma = np.where(np.isfinite(values), sigma, np.nan).astype(np.float32)
        return Composite(values, np.full(shape, np.nan), count.astype(np.uint16), np.full(shape, NO_CHOICE, np.int16),
                         sigma)
    if method == "bap":
        chosen = bap(block, candidates, target, half_width, weights or BapWeights())
    else:
        chosen = SELECTORS[method](block, candidates)
    valid = chosen >= 0
    index = np.where(valid, chosen, 0)
    values = np.take_along_axis(block.bands, index[None, None], axis=1)[:, 0]
    values[:, ~valid] = np.nan
    day = np.where(valid, block.days[index], np.nan)
    sigma = None
    if block.sigma is not None:
        sigma = np.take_along_axis(block.sigma, index[None, None], axis=1)[:, 0].astype(np.float32)
        sigma[:, ~valid] = np.nan
    return Composite(values.astype(np.float32), day, count.astype(np.uint16),
                     np.where(valid, index, NO_CHOICE).astype(np.int16), sigma)


def periods(start: date, end: date, spec: str) -> list[tuple[date, date]]:
    """The periods (first and last day, inclusive) that cover ``start`` to ``end``: ``month``, ``season``
    (December-February, ...), ``year`` or ``P<n>D`` (n days from ``start``)."""
    if end < start:
        raise MusyqError(f"the period ends ({end}) before it starts ({start})")
    out = []
    match = re.fullmatch(r"P(\d+)D", spec.upper())
    if match:
        n = int(match.group(1))
        if n < 1:
            raise MusyqError(f"period {spec!r} has no days")
        first = start
        while first <= end:
            out.append((first, min(first + timedelta(days=n - 1), end)))
            first += timedelta(days=n)
        return out
    if spec == "month":
        year, month = start.year, start.month
        while date(year, month, 1) <= end:
            out.append((date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out
    if spec == "season":
        year, month = (start.year - 1, 12) if start.month < 3 else (start.year, 3 * (start.month // 3))
        while date(year, month, 1) <= end:
            last_year, last_month = (year + 1, (month + 2) % 12) if month >= 11 else (year, month + 2)
            out.append((date(year, month, 1),
                        date(last_year, last_month, calendar.monthrange(last_year, last_month)[1])))
            year, month = (year + 1, 3) if month == 12 else (year, month + 3)
        return out
    if spec == "year":
        return [(date(y, 1, 1), date(y, 12, 31)) for y in range(start.year, end.year + 1)]
    raise MusyqError(f"unknown period {spec!r}; use month, season, year or P<n>D (e.g. P16D)")
