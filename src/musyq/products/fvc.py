"""Fractional vegetation cover by the pixel dichotomy model (Gutman & Ignatov 1998): a pixel's NDVI as the
cover-weighted mix of bare soil and full vegetation, the two end-members taken per tile from its NDVI histogram
(or given), with the NDVI uncertainty propagated."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from musyq.core.errors import MusyqError

SOIL_PERCENTILE, VEGETATION_PERCENTILE = 5.0, 95.0
MIN_PIXELS = 100  # below this a tile's histogram says nothing about its end-members


class EndMembers(NamedTuple):
    soil: float
    vegetation: float


class Cover(NamedTuple):
    fvc: NDArray[np.float64]  # 0..1, NaN where the NDVI is
    sigma: NDArray[np.float64] | None


def end_members(ndvi: NDArray[np.floating], land: NDArray[np.bool_] | None = None,
                soil: float = SOIL_PERCENTILE, vegetation: float = VEGETATION_PERCENTILE) -> EndMembers:
    """Soil and vegetation NDVI as the ``soil``-th and ``vegetation``-th percentiles of the tile's clear land."""
    values = np.asarray(ndvi, dtype=np.float64)
    usable = np.isfinite(values) if land is None else np.isfinite(values) & land
    if usable.sum() < MIN_PIXELS:
        raise MusyqError(f"{int(usable.sum())} clear land pixels are too few to choose FVC end-members from the "
                         f"histogram (at least {MIN_PIXELS}); give them instead")
    low, high = np.percentile(values[usable], [soil, vegetation])
    return _checked(float(low), float(high))


def _checked(soil: float, vegetation: float) -> EndMembers:
    if not vegetation > soil:
        raise MusyqError(f"the vegetation end-member (NDVI {vegetation:.3f}) must exceed the soil one ({soil:.3f})")
    return EndMembers(soil, vegetation)


def fractional_cover(ndvi: NDArray[np.floating], members: EndMembers,
                     sigma_ndvi: NDArray[np.floating] | None = None) -> Cover:
    """``(NDVI - soil) / (vegetation - soil)`` held to [0, 1]; its sigma is the NDVI's scaled by the slope, zero
    where the cover is held at a bound (the bound does not move with the NDVI)."""
    members = _checked(*members)
    values = np.asarray(ndvi, dtype=np.float64)
    span = members.vegetation - members.soil
    scaled = (values - members.soil) / span
    cover = np.clip(scaled, 0.0, 1.0)
    if sigma_ndvi is None:
        return Cover(cover, None)
    inside = (scaled > 0) & (scaled < 1)
    sigma = np.where(inside, np.asarray(sigma_ndvi, dtype=np.float64) / span, 0.0)
    return Cover(cover, np.where(np.isfinite(values), sigma, np.nan))
