"""Sun and view angles of a scene on any pixel grid.

Each product family knows its angles differently (5 km grids in Sentinel-2 tile metadata, angle bands
or only a time for Landsat and plain stacks); each is an ``AngleModel`` that can fill any ``GeoBox``.
Angles are smooth, so they are evaluated on a coarse lattice of the target grid and interpolated.
Azimuths travel as vector components so that nothing breaks where they wrap through 0/360 degrees or
where the view direction crosses nadir.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from scipy import ndimage

from musyq.solar import solar_angles

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

# One angle value per this many target pixels, interpolated bilinearly in between.
LATTICE_STEP = 16


@dataclass(frozen=True, eq=False)
class Angles:
    """Per-pixel angles in degrees; azimuths clockwise from north."""

    sun_zenith: F32
    sun_azimuth: F32
    view_zenith: F32
    view_azimuth: F32

    def stack(self) -> F32:
        """Bands in the order of the ARD angle layer: sun azimuth, sun zenith, view azimuth, view zenith."""
        return np.stack([self.sun_azimuth, self.sun_zenith, self.view_azimuth, self.view_zenith])


class AngleModel(Protocol):
    def on(self, geobox: GeoBox) -> Angles: ...

    def describe(self) -> str: ...


def _lattice(geobox: GeoBox, step: int) -> tuple[F64, F64, F64, F64]:
    """Pixel-centre coordinates of every ``step``-th row and column (always including the last)."""
    height, width = geobox.shape
    rows = np.unique(np.append(np.arange(0, height, step), height - 1)).astype(float)
    cols = np.unique(np.append(np.arange(0, width, step), width - 1)).astype(float)
    a = geobox.affine
    col_grid, row_grid = np.meshgrid(cols + 0.5, rows + 0.5)
    x = a.c + a.a * col_grid + a.b * row_grid
    y = a.f + a.d * col_grid + a.e * row_grid
    return x, y, rows, cols


def _upsample(values: F64, rows: F64, cols: F64, shape: tuple[int, int]) -> F32:
    """Bilinear interpolation from the lattice to every pixel of ``shape``."""
    row_pos = np.interp(np.arange(shape[0]), rows, np.arange(rows.size))
    col_pos = np.interp(np.arange(shape[1]), cols, np.arange(cols.size))
    r0 = np.clip(np.floor(row_pos).astype(int), 0, max(rows.size - 2, 0))
    c0 = np.clip(np.floor(col_pos).astype(int), 0, max(cols.size - 2, 0))
    r1 = np.minimum(r0 + 1, rows.size - 1)
    c1 = np.minimum(c0 + 1, cols.size - 1)
    fr = (row_pos - r0).astype(np.float32)[:, None]
    fc = (col_pos - c0).astype(np.float32)[None, :]
    v = values.astype(np.float32)
    top = v[r0][:, c0] * (1 - fc) + v[r0][:, c1] * fc
    bottom = v[r1][:, c0] * (1 - fc) + v[r1][:, c1] * fc
    return np.asarray(top * (1 - fr) + bottom * fr, dtype=np.float32)


def _from_components(
    geobox: GeoBox, evaluate: Callable[[F64, F64], tuple[F64, F64, F64, F64]], step: int = LATTICE_STEP
) -> Angles:
    """Evaluate sun (zenith, azimuth) and view (zenith, azimuth) on the lattice, then fill the grid."""
    x, y, rows, cols = _lattice(geobox, step)
    sun_zen, sun_az, view_zen, view_az = evaluate(x, y)
    shape = geobox.shape.yx
    sun_sin = _upsample(np.sin(np.radians(sun_az)), rows, cols, shape)
    sun_cos = _upsample(np.cos(np.radians(sun_az)), rows, cols, shape)
    tan_view = np.tan(np.radians(view_zen))
    view_east = _upsample(tan_view * np.sin(np.radians(view_az)), rows, cols, shape)
    view_north = _upsample(tan_view * np.cos(np.radians(view_az)), rows, cols, shape)
    return Angles(
        sun_zenith=_upsample(sun_zen, rows, cols, shape),
        sun_azimuth=(np.degrees(np.arctan2(sun_sin, sun_cos)) % 360).astype(np.float32),
        view_zenith=np.degrees(np.arctan(np.hypot(view_east, view_north))).astype(np.float32),
        view_azimuth=(np.degrees(np.arctan2(view_east, view_north)) % 360).astype(np.float32),
    )


def _to_lonlat(geobox: GeoBox, x: F64, y: F64) -> tuple[F64, F64]:
    transformer = Transformer.from_crs(geobox.crs.to_wkt(), "EPSG:4326", always_xy=True)
    lon, lat = transformer.transform(x, y)
    return np.asarray(lon), np.asarray(lat)


@dataclass(frozen=True)
class SolarPositionAngles:
    """Sun angles computed from the acquisition time at every pixel; a fixed view direction."""

    acquired: datetime
    view_zenith: float = 0.0
    view_azimuth: float = 0.0

    def on(self, geobox: GeoBox) -> Angles:
        def evaluate(x: F64, y: F64) -> tuple[F64, F64, F64, F64]:
            lon, lat = _to_lonlat(geobox, x, y)
            zenith, azimuth = solar_angles(self.acquired, lat, lon)
            return zenith, azimuth, np.full_like(zenith, self.view_zenith), np.full_like(zenith, self.view_azimuth)

        return _from_components(geobox, evaluate)

    def describe(self) -> str:
        return f"sun from solar position at {self.acquired:%Y-%m-%dT%H:%M:%SZ}; view fixed at {self.view_zenith:g} deg"


@dataclass(frozen=True, eq=False)
class AngleGrids:
    """Angles known at the nodes of a regular grid (Sentinel-2: 5 km nodes from the tile corner).

    ``origin_x``/``origin_y`` are the coordinates of node (0, 0) in ``crs``; nodes are ``step`` metres
    apart, rows going south. Gaps (view angles outside every detector) must already be filled.
    """

    crs: str
    origin_x: float
    origin_y: float
    step: float
    sun_zenith: F64
    sun_azimuth: F64
    view_zenith: F64
    view_azimuth: F64

    def on(self, geobox: GeoBox) -> Angles:
        same_crs = geobox.crs == self.crs

        def evaluate(x: F64, y: F64) -> tuple[F64, F64, F64, F64]:
            if not same_crs:
                transformer = Transformer.from_crs(geobox.crs.to_wkt(), self.crs, always_xy=True)
                x, y = (np.asarray(v) for v in transformer.transform(x, y))
            coords = np.stack([(self.origin_y - y) / self.step, (x - self.origin_x) / self.step])

            def sample(grid: F64) -> F64:
                return np.asarray(ndimage.map_coordinates(grid, coords, order=1, mode="nearest"))

            sun_x = sample(np.sin(np.radians(self.sun_azimuth)))
            sun_y = sample(np.cos(np.radians(self.sun_azimuth)))
            tan_view = np.tan(np.radians(self.view_zenith))
            view_x = sample(tan_view * np.sin(np.radians(self.view_azimuth)))
            view_y = sample(tan_view * np.cos(np.radians(self.view_azimuth)))
            return (
                sample(self.sun_zenith),
                np.degrees(np.arctan2(sun_x, sun_y)),
                np.degrees(np.arctan(np.hypot(view_x, view_y))),
                np.degrees(np.arctan2(view_x, view_y)),
            )

        return _from_components(geobox, evaluate)

    def describe(self) -> str:
        return f"angle grids every {self.step:g} m from product metadata"


def fill_gaps(grid: F64) -> F64:
    """Replace NaN nodes by their nearest valid node (grids stop at the swath edge)."""
    missing = ~np.isfinite(grid)
    if not missing.any():
        return grid
    if missing.all():
        raise ValueError("angle grid has no valid node")
    nearest = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
    return np.asarray(grid[tuple(nearest)])


def mean_view_direction(zeniths: list[F64], azimuths: list[F64]) -> tuple[F64, F64]:
    """Average view grids (one per band and detector) as vectors, so opposite azimuths do not cancel badly."""
    east = np.stack([np.tan(np.radians(z)) * np.sin(np.radians(a)) for z, a in zip(zeniths, azimuths, strict=True)])
    north = np.stack([np.tan(np.radians(z)) * np.cos(np.radians(a)) for z, a in zip(zeniths, azimuths, strict=True)])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nodes outside every detector stay NaN
        mean_east = np.nanmean(east, axis=0)
        mean_north = np.nanmean(north, axis=0)
    zenith = np.degrees(np.arctan(np.hypot(mean_east, mean_north)))
    azimuth = np.degrees(np.arctan2(mean_east, mean_north)) % 360
    return fill_gaps(zenith), fill_gaps(azimuth)
