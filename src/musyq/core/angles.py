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
from numba import njit, prange
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from rasterio.rpc import RPC
from scipy import ndimage

from musyq.core.grid import crs_wkt
from musyq.core.rpc import project, view_angles
from musyq.core.solar import solar_angles

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

# One angle value per this many target pixels, interpolated bilinearly in between.
LATTICE_STEP = 16


@dataclass(frozen=True, eq=False)
class Angles:
    """Per-pixel angles in degrees, azimuths clockwise from north, stacked in the order of the ARD angle
    layer: sun azimuth, sun zenith, view azimuth, view zenith."""

    values: F32

    @property
    def sun_azimuth(self) -> F32:
        return np.asarray(self.values[0])

    @property
    def sun_zenith(self) -> F32:
        return np.asarray(self.values[1])

    @property
    def view_azimuth(self) -> F32:
        return np.asarray(self.values[2])

    @property
    def view_zenith(self) -> F32:
        return np.asarray(self.values[3])


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


def _interpolation_weights(lattice: F64, size: int) -> tuple[NDArray[np.int64], F32]:
    """For every pixel index: the lattice node below it and the fractional distance to the next node."""
    position = np.interp(np.arange(size), lattice, np.arange(lattice.size))
    lower = np.clip(np.floor(position).astype(np.int64), 0, max(lattice.size - 2, 0))
    return lower, (position - lower).astype(np.float32)


@njit(inline="always", cache=True)
def _blend(
    grid: NDArray[np.float32], r0: int, r1: int, c0: int, c1: int, w00: float, w01: float, w10: float, w11: float
) -> float:  # pragma: no cover - compiled
    return float(w00 * grid[r0, c0] + w01 * grid[r0, c1] + w10 * grid[r1, c0] + w11 * grid[r1, c1])


@njit(parallel=True, cache=True)
def _fill_angles(
    components: NDArray[np.float32], row_lower: NDArray[np.int64], row_frac: NDArray[np.float32],
    col_lower: NDArray[np.int64], col_frac: NDArray[np.float32], out: NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    """Bilinear interpolation of the lattice components to every pixel, converted back to angles.

    ``components``: sun zenith, sin and cos of sun azimuth, east and north of tan(view zenith) on the lattice.
    """
    n_rows, n_cols = components.shape[1], components.shape[2]
    degrees = np.float32(180.0 / np.pi)
    for i in prange(out.shape[1]):
        r0 = row_lower[i]
        r1 = min(r0 + 1, n_rows - 1)
        fr = row_frac[i]
        for j in range(out.shape[2]):
            c0 = col_lower[j]
            c1 = min(c0 + 1, n_cols - 1)
            fc = col_frac[j]
            w00 = (1 - fr) * (1 - fc)
            w01 = (1 - fr) * fc
            w10 = fr * (1 - fc)
            w11 = fr * fc
            sz = _blend(components[0], r0, r1, c0, c1, w00, w01, w10, w11)
            sun_east = _blend(components[1], r0, r1, c0, c1, w00, w01, w10, w11)
            sun_north = _blend(components[2], r0, r1, c0, c1, w00, w01, w10, w11)
            view_east = _blend(components[3], r0, r1, c0, c1, w00, w01, w10, w11)
            view_north = _blend(components[4], r0, r1, c0, c1, w00, w01, w10, w11)
            sun_azimuth = np.arctan2(sun_east, sun_north) * degrees
            view_azimuth = np.arctan2(view_east, view_north) * degrees
            out[0, i, j] = sun_azimuth + 360 if sun_azimuth < 0 else sun_azimuth
            out[1, i, j] = sz
            out[2, i, j] = view_azimuth + 360 if view_azimuth < 0 else view_azimuth
            out[3, i, j] = np.arctan(np.sqrt(view_east * view_east + view_north * view_north)) * degrees


def _from_components(
    geobox: GeoBox, evaluate: Callable[[F64, F64], tuple[F64, F64, F64, F64]], step: int = LATTICE_STEP
) -> Angles:
    """Evaluate sun (zenith, azimuth) and view (zenith, azimuth) on the lattice, then fill the grid."""
    x, y, rows, cols = _lattice(geobox, step)
    sun_zen, sun_az, view_zen, view_az = evaluate(x, y)
    tan_view = np.tan(np.radians(view_zen))
    components = np.stack([
        sun_zen, np.sin(np.radians(sun_az)), np.cos(np.radians(sun_az)),
        tan_view * np.sin(np.radians(view_az)), tan_view * np.cos(np.radians(view_az)),
    ]).astype(np.float32)
    height, width = geobox.shape.yx
    out = np.empty((4, height, width), dtype=np.float32)
    _fill_angles(components, *_interpolation_weights(rows, height), *_interpolation_weights(cols, width), out)
    return Angles(out)


def _to_lonlat(geobox: GeoBox, x: F64, y: F64) -> tuple[F64, F64]:
    transformer = Transformer.from_crs(crs_wkt(geobox), "EPSG:4326", always_xy=True)
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
                transformer = Transformer.from_crs(crs_wkt(geobox), self.crs, always_xy=True)
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


WGS84_A = 6_378_137.0
WGS84_E2 = 6.694379990141317e-3


def ground_frame(lon: F64, lat: F64) -> tuple[F64, F64, F64, F64]:
    """ECEF position on the ellipsoid and the local east, north and up unit vectors (stacked last)."""
    lam, phi = np.radians(lon), np.radians(lat)
    radius = WGS84_A / np.sqrt(1 - WGS84_E2 * np.sin(phi) ** 2)
    position = np.stack([radius * np.cos(phi) * np.cos(lam), radius * np.cos(phi) * np.sin(lam),
                         radius * (1 - WGS84_E2) * np.sin(phi)], axis=-1)
    east = np.stack([-np.sin(lam), np.cos(lam), np.zeros_like(lam)], axis=-1)
    north = np.stack([-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)], axis=-1)
    up = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)
    return position, east, north, up


def view_from_track(lon: F64, lat: F64, track: F64) -> tuple[F64, F64]:
    """View zenith and azimuth (ground towards satellite) from an orbit sampled in ECEF metres.

    A pushbroom sensor images a point when the point crosses the plane through the satellite normal to
    its velocity; that crossing is found between the two track samples where ``(P - S) . V`` changes sign.
    """
    velocity = np.gradient(track, axis=0)
    ground, east, north, up = ground_frame(lon.ravel(), lat.ravel())
    ahead = np.einsum("pk,tk->pt", ground, velocity) - np.einsum("tk,tk->t", track, velocity)[None, :]
    crossed = (ahead[:, :-1] >= 0) & (ahead[:, 1:] < 0)
    last = track.shape[0] - 2
    step = np.where(crossed.any(axis=1), crossed.argmax(axis=1), np.where(ahead[:, 0] < 0, 0, last))
    rows = np.arange(ground.shape[0])
    before, after = ahead[rows, step], ahead[rows, step + 1]
    fraction = np.clip(before / np.where(before != after, before - after, 1.0), 0.0, 1.0)[:, None]
    satellite = track[step] * (1 - fraction) + track[step + 1] * fraction
    sight = satellite - ground
    up_part = np.einsum("pk,pk->p", sight, up)
    east_part = np.einsum("pk,pk->p", sight, east)
    north_part = np.einsum("pk,pk->p", sight, north)
    zenith = np.degrees(np.arctan2(np.hypot(east_part, north_part), up_part))
    azimuth = np.degrees(np.arctan2(east_part, north_part)) % 360
    return zenith.reshape(lon.shape), azimuth.reshape(lon.shape)


@dataclass(frozen=True, eq=False)
class EphemerisAngles:
    """Sun from the solar position at the scene time; view from the satellite track (Landsat ANG files)."""

    acquired: datetime
    track: F64  # (samples, 3) ECEF metres

    def on(self, geobox: GeoBox) -> Angles:
        def evaluate(x: F64, y: F64) -> tuple[F64, F64, F64, F64]:
            lon, lat = _to_lonlat(geobox, x, y)
            zenith, azimuth = solar_angles(self.acquired, lat, lon)
            view_zenith, view_azimuth = view_from_track(lon, lat, self.track)
            return zenith, azimuth, view_zenith, view_azimuth

        return _from_components(geobox, evaluate)

    def describe(self) -> str:
        return (f"sun from solar position at {self.acquired:%Y-%m-%dT%H:%M:%SZ}; view from the satellite "
                f"ephemeris ({self.track.shape[0]} samples)")


@dataclass(frozen=True, eq=False)
class RpcStrip:
    """One image known by its RPC model; ``column`` is where it starts in the whole scene."""

    rpc: RPC
    width: int
    height: int
    column: int = 0


@dataclass(frozen=True, eq=False)
class RpcAngles:
    """Sun from the solar position at the scene time; view along the RPC model's lines of sight, per pixel
    (a wide-field camera sees the ground from up to about 35 degrees off nadir at its swath edges)."""

    acquired: datetime
    strips: tuple[RpcStrip, ...]

    def on(self, geobox: GeoBox) -> Angles:
        def evaluate(x: F64, y: F64) -> tuple[F64, F64, F64, F64]:
            lon, lat = _to_lonlat(geobox, x, y)
            zenith, azimuth = solar_angles(self.acquired, lat, lon)
            view_zenith, view_azimuth = self._view(lon, lat)
            return zenith, azimuth, view_zenith, view_azimuth

        return _from_components(geobox, evaluate)

    def _view(self, lon: F64, lat: F64) -> tuple[F64, F64]:
        """Each point takes the strip whose image holds it (the nearest where none does)."""
        best_zenith, best_azimuth = np.zeros_like(lon), np.zeros_like(lon)
        best_outside = np.full(lon.shape, np.inf)
        for strip in self.strips:
            height = strip.rpc.height_off
            line, sample = project(strip.rpc, lon, lat, height)
            outside = (np.maximum(np.maximum(-sample, sample - (strip.width - 1)), 0)
                       + np.maximum(np.maximum(-line, line - (strip.height - 1)), 0))
            zenith, azimuth = view_angles(strip.rpc, lon, lat, height)
            better = outside < best_outside
            best_zenith[better], best_azimuth[better], best_outside[better] = zenith[better], azimuth[better], \
                outside[better]
        return best_zenith, best_azimuth

    def describe(self) -> str:
        return (f"sun from solar position at {self.acquired:%Y-%m-%dT%H:%M:%SZ}; view along the lines of sight "
                f"of the RPC model ({len(self.strips)} image{'s' if len(self.strips) > 1 else ''})")


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
