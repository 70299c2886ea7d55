"""A coarse reference series of the same place (MODIS NBAR, surface reflectance or vegetation indices), turned
into smooth curves that the reconstruction follows through long gaps and measures outliers against, as the
Spectrum Earth system does with low-resolution curves.

The coarse granules are mosaicked per day onto one coarse grid over the tile, each coarse pixel's series is
smoothed once (robust Whittaker, the strength by GCV) at the days the reconstruction needs, and blocks of the
fine grid sample those curves by bilinear resampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from rasterio.warp import Resampling, reproject

from musyq.core.errors import MusyqError
from musyq.io.modis import CoarseScene, find_granules, read_modis
from musyq.timeseries.whittaker import smooth

EPOCH = date(1970, 1, 1)  # the cube's day numbers count from here
REACH = 24.0  # days a curve may run beyond the coarse pixel's first or last usable observation
INDICES = ("ndvi", "evi")  # variables that clouds only lower: asymmetric weights


@dataclass(frozen=True)
class ReferenceCurves:
    """Smoothed coarse curves ``(day, y, x)`` per variable on ``geobox``, NaN where the reference is too thin."""

    days: NDArray[np.float64]  # days since 1970-01-01
    geobox: GeoBox
    curves: dict[str, NDArray[np.float32]]
    sources: tuple[str, ...]

    def sample(self, target: GeoBox, variable: str) -> NDArray[np.float32]:
        """The variable's curves resampled onto ``target`` ``(day, y, x)``."""
        out = np.full((self.days.size,) + target.shape.yx, np.nan, dtype=np.float32)
        reproject(self.curves[variable], out, src_transform=self.geobox.transform, src_crs=_wkt(self.geobox),
                  dst_transform=target.transform, dst_crs=_wkt(target), src_nodata=np.nan, dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
        return out


def _wkt(geobox: GeoBox) -> str:
    if geobox.crs is None:
        raise MusyqError("a grid without a coordinate reference system cannot be resampled")
    return str(geobox.crs.wkt)


def _coarse_grid(scenes: list[CoarseScene], tile: GeoBox) -> GeoBox:
    """The first scene's grid, cut to the tile's footprint with a margin of two coarse pixels."""
    grid = scenes[0].geobox
    footprint = tile.boundingbox.to_crs(_wkt(grid))
    resolution = abs(grid.resolution.x)
    x0 = grid.transform.c + np.floor((footprint.left - grid.transform.c) / resolution - 2) * resolution
    y0 = grid.transform.f - np.floor((grid.transform.f - footprint.top) / resolution - 2) * resolution
    width = int(np.ceil((footprint.right - x0) / resolution)) + 2
    height = int(np.ceil((y0 - footprint.bottom) / resolution)) + 2
    return GeoBox((height, width), Affine(resolution, 0, x0, 0, -resolution, y0), grid.crs)


def _smooth_stack(times: NDArray[np.float64], stack: NDArray[np.float32], wanted: NDArray[np.float64],
                  asymmetric: bool) -> NDArray[np.float32]:
    """Each coarse pixel's series ``stack`` ``(time, y, x)`` on ``times`` smoothed and sampled at ``wanted``
    (a subset of ``times``); NaN beyond ``REACH`` days of a pixel's first and last observation."""
    series = np.moveaxis(stack, 0, -1).reshape(-1, times.size)
    observed = np.isfinite(series)
    curve = smooth(times, series, observed.astype(np.float64), asymmetric=asymmetric, step=16.0).curve
    seen = observed.any(axis=1)
    first = np.where(seen, times[np.argmax(observed, axis=1)], np.inf)
    last = np.where(seen, times[times.size - 1 - np.argmax(observed[:, ::-1], axis=1)], -np.inf)
    curve[(times[None, :] < first[:, None] - REACH) | (times[None, :] > last[:, None] + REACH)] = np.nan
    at = np.searchsorted(times, wanted)
    return np.moveaxis(curve[:, at].reshape(stack.shape[1:] + (wanted.size,)), -1, 0).astype(np.float32)


def stack_reference(days: NDArray[np.float64], stack: NDArray[np.float32], geobox: GeoBox,
                    wanted: NDArray[np.float64], variable: str, source: str) -> ReferenceCurves:
    """Curves at ``wanted`` days from a coarse stack ``(time, y, x)`` (NaN for gaps) on ``days``."""
    observed = np.asarray(days, dtype=np.float64)
    if observed.size != stack.shape[0] or np.any(np.diff(observed) <= 0):
        raise MusyqError(f"{source}: {stack.shape[0]} layers need as many strictly increasing dates")
    target = np.asarray(wanted, dtype=np.float64)
    times = np.union1d(observed, target)
    placed = np.full((times.size,) + stack.shape[1:], np.nan, dtype=np.float32)
    placed[np.searchsorted(times, observed)] = stack
    curves = _smooth_stack(times, placed, target, variable in INDICES)
    return ReferenceCurves(target, geobox, {variable: curves}, (source,))


def reference_curves(paths: list[Path], tile: GeoBox, days: NDArray[np.float64],
                     variables: tuple[str, ...]) -> ReferenceCurves:
    """Curves of ``variables`` (those the reference has) at ``days`` over the tile, from MODIS files or folders."""
    scenes = [read_modis(granule) for granule in find_granules(paths)]
    grid = _coarse_grid(scenes, tile)
    available = [v for v in variables if any(v in s.layers for s in scenes)]
    if not available:
        raise MusyqError(f"the reference holds none of {', '.join(variables)}")
    scene_days = np.array([float((s.day - EPOCH).days) for s in scenes])
    wanted = np.asarray(days, dtype=np.float64)
    times = np.union1d(np.unique(scene_days), wanted)
    curves = {}
    for variable in available:
        stack = np.full((times.size,) + grid.shape.yx, np.nan, dtype=np.float32)
        for scene, day in zip(scenes, scene_days, strict=True):
            if variable not in scene.layers:
                continue
            placed = np.full(grid.shape.yx, np.nan, dtype=np.float32)
            reproject(scene.layers[variable], placed, src_transform=scene.geobox.transform,
                      src_crs=_wkt(scene.geobox), dst_transform=grid.transform, dst_crs=_wkt(grid),
                      src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.nearest)
            slot = stack[np.searchsorted(times, day)]
            np.copyto(slot, placed, where=np.isnan(slot))  # granules of one day fill each other's gaps
        curves[variable] = _smooth_stack(times, stack, wanted, variable in INDICES)
    return ReferenceCurves(wanted, grid, curves, tuple(sorted({s.product for s in scenes})))
