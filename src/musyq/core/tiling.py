"""Putting a scene's bands on a tile's pixel grid.

Digital numbers are warped before calibration: calibration is affine in DN (Sentinel-2 exactly, Landsat
up to the slowly varying 1/cos(sun zenith)), so warping first gives the same values while calibrating
only the output pixels, which at 30 m are a ninth of the 10 m input.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import rasterio
import rasterio.io
from numba import njit, prange
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.rpc import RPC
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from musyq.core.errors import InputError
from musyq.core import rpc
from musyq.core.grid import crs_wkt
from musyq.core.scene import BandSource


class ReflectanceResampling(str, Enum):
    """How reflectance is resampled when the output is not coarser than the input."""

    bilinear = "bilinear"
    cubic = "cubic"
    nearest = "nearest"


def resampling_for(native_resolution: float, target_resolution: float, method: ReflectanceResampling) -> Resampling:
    """Area averaging when coarsening (each output pixel is the mean of the inputs it covers), else ``method``."""
    if target_resolution > native_resolution * 1.001:
        return Resampling.average
    return Resampling[method.value]


@njit(nogil=True, cache=True)
def _block_average(
    data: NDArray[np.generic], row_offset: int, col_offset: int, factor: int, has_nodata: bool, nodata: float,
    out: NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    """Mean of the valid input pixels under each output pixel; NaN where none is valid.

    ``data`` starts ``row_offset``/``col_offset`` input pixels after the output grid's origin.
    """
    height, width = data.shape
    for i in range(out.shape[0]):
        top = max(i * factor - row_offset, 0)
        bottom = min((i + 1) * factor - row_offset, height)
        for j in range(out.shape[1]):
            left = max(j * factor - col_offset, 0)
            right = min((j + 1) * factor - col_offset, width)
            total = 0.0
            count = 0
            for r in range(top, bottom):
                for c in range(left, right):
                    value = data[r, c]
                    if not (has_nodata and value == nodata):
                        total += value
                        count += 1
            out[i, j] = total / count if count > 0 else np.nan


def aligned_blocks(dataset: rasterio.io.DatasetReader, geobox: GeoBox) -> tuple[int, int, int] | None:
    """When ``geobox`` is the input grid with pixels merged ``k x k``: ``k`` and the input row and column of
    the geobox origin; else None."""
    source, target = dataset.transform, geobox.affine
    if source.b or source.d or target.b or target.d or dataset.crs is None or geobox.crs != dataset.crs.to_wkt():
        return None
    factor = target.a / source.a
    k = int(round(factor))
    if k < 2 or abs(factor - k) > 1e-9 or abs(target.e / source.e - k) > 1e-9:
        return None
    col_shift, row_shift = (target.c - source.c) / source.a, (target.f - source.f) / source.e
    if abs(col_shift - round(col_shift)) > 1e-6 or abs(row_shift - round(row_shift)) > 1e-6:
        return None
    return k, round(row_shift), round(col_shift)


def _coarsen_aligned(
    dataset: rasterio.io.DatasetReader, index: int, nodata: float | None, geobox: GeoBox,
    blocks: tuple[int, int, int], destination: NDArray[np.float32],
) -> None:
    """Read only the input pixels under ``geobox`` and average them block by block."""
    factor, row_start, col_start = blocks
    height, width = geobox.shape.yx
    col0, row0 = max(col_start, 0), max(row_start, 0)
    col1, row1 = min(col_start + width * factor, dataset.width), min(row_start + height * factor, dataset.height)
    if col0 >= col1 or row0 >= row1:
        return
    data = dataset.read(index, window=Window(col0, row0, col1 - col0, row1 - row0))
    _block_average(data, row0 - row_start, col0 - col_start, factor, nodata is not None,
                   0.0 if nodata is None else float(nodata), destination)


def _root_cause(error: BaseException) -> str:
    """GDAL's own words: rasterio chains the driver's message under a generic one."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return str(error).strip()


def source_window(dataset: rasterio.io.DatasetReader, geobox: GeoBox, margin: int = 3) -> Window | None:
    """The input pixels that can contribute to ``geobox`` (with room for resampling kernels), or None."""
    left, bottom, right, top = transform_bounds(crs_wkt(geobox), dataset.crs, *geobox.boundingbox,
                                                densify_pts=21)
    window = from_bounds(left, bottom, right, top, dataset.transform)
    col0 = max(math.floor(window.col_off) - margin, 0)
    row0 = max(math.floor(window.row_off) - margin, 0)
    col1 = min(math.ceil(window.col_off + window.width) + margin, dataset.width)
    row1 = min(math.ceil(window.row_off + window.height) + margin, dataset.height)
    if col0 >= col1 or row0 >= row1:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


@dataclass(frozen=True)
class Terrain:
    """Heights that place an image known only by its RPC model: a DEM (metres above the ellipsoid) where
    given, else one height for the whole scene (None: the model's own mean height)."""

    dem: Path | None = None
    height: float | None = None

    def transformer_options(self, rpc: RPC) -> dict[str, str | float]:
        height = rpc.height_off if self.height is None else self.height
        if self.dem is None:
            return {"RPC_HEIGHT": height}
        return {"RPC_DEM": str(self.dem), "RPC_DEMINTERPOLATION": "bilinear", "RPC_DEM_MISSING_VALUE": height}


def _ground_outline(geobox: GeoBox, points: int = 21) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Longitudes and latitudes of a grid's edges and of a few lines across it."""
    height, width = geobox.shape.yx
    rows, cols = np.meshgrid(np.linspace(0, height, points), np.linspace(0, width, points), indexing="ij")
    a = geobox.affine
    x = a.c + a.a * cols.ravel() + a.b * rows.ravel()
    y = a.f + a.d * cols.ravel() + a.e * rows.ravel()
    lon, lat = Transformer.from_crs(crs_wkt(geobox), "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


GEOLOCATION_STEP = 16  # output pixels between the nodes where the RPC model is evaluated exactly


def node_grid(size: int, step: int) -> NDArray[np.float64]:
    """Node positions every ``step`` pixels, past the last pixel so that every pixel lies between two."""
    return np.arange(0, size + step, step, dtype=np.float64)[: (size - 1) // step + 2]


@njit(parallel=True, cache=True)
def _geolocate(node_lines: NDArray[np.float64], node_samples: NDArray[np.float64], levels: NDArray[np.float64],
               heights: NDArray[np.float32], step: int, lines: NDArray[np.float32],
               samples: NDArray[np.float32]) -> None:  # pragma: no cover - compiled
    """Image line and sample of every output pixel from the model's values on a node grid at three heights:
    bilinear between the nodes (the model is smooth in longitude and latitude), quadratic in the pixel's own
    terrain height (a line of sight is all but straight over the terrain's range)."""
    rows, cols = lines.shape
    h0, h1, h2 = levels[0], levels[1], levels[2]
    for i in prange(rows):
        r0 = min(i // step, node_lines.shape[1] - 2)
        fr = (i - r0 * step) / step
        for j in range(cols):
            c0 = min(j // step, node_lines.shape[2] - 2)
            fc = (j - c0 * step) / step
            w00, w01, w10, w11 = (1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc
            h = heights[i, j]
            weights = ((h - h1) * (h - h2) / ((h0 - h1) * (h0 - h2)), (h - h0) * (h - h2) / ((h1 - h0) * (h1 - h2)),
                       (h - h0) * (h - h1) / ((h2 - h0) * (h2 - h1)))
            line, sample = 0.0, 0.0
            for k in range(3):
                line += weights[k] * (w00 * node_lines[k, r0, c0] + w01 * node_lines[k, r0, c0 + 1]
                                      + w10 * node_lines[k, r0 + 1, c0] + w11 * node_lines[k, r0 + 1, c0 + 1])
                sample += weights[k] * (w00 * node_samples[k, r0, c0] + w01 * node_samples[k, r0, c0 + 1]
                                        + w10 * node_samples[k, r0 + 1, c0] + w11 * node_samples[k, r0 + 1, c0 + 1])
            lines[i, j] = line
            samples[i, j] = sample


@njit(nogil=True, cache=True)
def _sample_bilinear(data: NDArray[np.generic], row0: int, col0: int, has_nodata: bool, nodata: float,
                     lines: NDArray[np.float32], samples: NDArray[np.float32],
                     out: NDArray[np.float32]) -> None:  # pragma: no cover - compiled
    """Bilinear DN at each output pixel's image position (integers at pixel centres) from ``data``, the image
    window starting at ``row0``/``col0``; fill neighbours are left out and the others reweighted, as GDAL's
    warper does. Pixels outside the window or with no valid neighbour keep what ``out`` holds."""
    height, width = data.shape
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            r = lines[i, j] - row0
            c = samples[i, j] - col0
            if not (r >= -0.5 and r <= height - 0.5 and c >= -0.5 and c <= width - 0.5):
                continue
            ra = min(max(int(np.floor(r)), 0), height - 1)
            ca = min(max(int(np.floor(c)), 0), width - 1)
            rb, cb = min(ra + 1, height - 1), min(ca + 1, width - 1)
            fr, fc = min(max(r - ra, 0.0), 1.0), min(max(c - ca, 0.0), 1.0)
            total, weight = 0.0, 0.0
            for rr, cc, w in ((ra, ca, (1 - fr) * (1 - fc)), (ra, cb, (1 - fr) * fc), (rb, ca, fr * (1 - fc)),
                              (rb, cb, fr * fc)):
                value = float(data[rr, cc])
                if w > 0 and not (has_nodata and value == nodata) and value == value:
                    total += w * value
                    weight += w
            if weight > 1e-6:
                out[i, j] = total / weight


class _Geolocations:
    """Image positions of a grid's pixels, computed once per image and grid and shared by the bands: the bands
    of one RPC image are read in parallel threads, and the first one to need the positions computes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grid: tuple[object, ...] | None = None
        self._found: dict[str, tuple[threading.Lock, list[tuple[NDArray[np.float32], ...]]]] = {}

    def get(self, path: str, model: RPC, geobox: GeoBox, terrain: Terrain) -> tuple[NDArray[np.float32], ...]:
        grid = (geobox.shape.yx, tuple(geobox.affine), str(geobox.crs), terrain)
        with self._lock:
            if grid != self._grid:  # one grid at a time: a tile's positions take ~0.5 GB
                self._grid, self._found = grid, {}
            lock, slot = self._found.setdefault(path, (threading.Lock(), []))
        with lock:
            if not slot:
                slot.append(_positions(model, geobox, terrain))
            return slot[0]


_GEOLOCATIONS = _Geolocations()


def _positions(model: RPC, geobox: GeoBox, terrain: Terrain) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Image line and sample of every pixel of ``geobox`` on the terrain (the DEM, where it has no data the
    terrain's or the model's one height)."""
    shape = geobox.shape.yx
    heights = np.full(shape, np.nan, dtype=np.float32)
    fallback = model.height_off if terrain.height is None else terrain.height
    if terrain.dem is not None:
        try:
            with rasterio.open(terrain.dem) as dem:
                reproject(rasterio.band(dem, 1), heights, dst_transform=geobox.affine, dst_crs=crs_wkt(geobox),
                          src_nodata=dem.nodata, dst_nodata=np.nan, resampling=Resampling.bilinear, num_threads=2)
        except rasterio.RasterioIOError as exc:
            raise InputError(terrain.dem, f"cannot read the DEM: {_root_cause(exc)}") from exc
    heights[~np.isfinite(heights)] = np.float32(fallback)
    low, high = float(heights.min()), float(heights.max())
    span = max(high - low, 1.0)
    levels = np.array([low - 0.1 * span, 0.5 * (low + high), high + 0.1 * span])
    rows, cols = node_grid(shape[0], GEOLOCATION_STEP), node_grid(shape[1], GEOLOCATION_STEP)
    a = geobox.affine
    x = a.c + (cols[None, :] + 0.5) * a.a + (rows[:, None] + 0.5) * a.b
    y = a.f + (cols[None, :] + 0.5) * a.d + (rows[:, None] + 0.5) * a.e
    lon, lat = Transformer.from_crs(crs_wkt(geobox), "EPSG:4326", always_xy=True).transform(x, y)
    projected = [rpc.project(model, lon, lat, np.full(np.shape(lon), level)) for level in levels]
    node_lines = np.ascontiguousarray([p[0] for p in projected], dtype=np.float64)
    node_samples = np.ascontiguousarray([p[1] for p in projected], dtype=np.float64)
    lines = np.empty(shape, dtype=np.float32)
    samples = np.empty(shape, dtype=np.float32)
    _geolocate(node_lines, node_samples, levels, heights, GEOLOCATION_STEP, lines, samples)
    return lines, samples


def _warp_rpc(dataset: rasterio.io.DatasetReader, source: BandSource, geobox: GeoBox, method: ReflectanceResampling,
              threads: int, terrain: Terrain, destination: NDArray[np.float32]) -> None:
    """Orthorectify the part of an RPC-located image under ``geobox``.

    Only the image window the tile can fall in, at any height the model spans, is decoded. At the image's own
    pixel size with bilinear resampling, the pixels' image positions are computed once for all bands (the model
    on a node grid, the DEM read once onto the tile) and the DN sampled there: GDAL's RPC transformer solves
    every pixel against the DEM again for every band, six times slower. Other cases (coarser output, cubic,
    nearest) go through GDAL's warper. Pixels already filled (from another part of the band) are kept.
    """
    model = dataset.rpcs
    if model is None:
        raise InputError(source.path, "has neither a map georeference nor an RPC model (its .rpb is missing)")
    lon, lat = _ground_outline(geobox)
    heights = (model.height_off - model.height_scale, model.height_off + model.height_scale)
    window = rpc.image_window(model, lon, lat, heights, (dataset.height, dataset.width))
    if window is None:
        return
    row0, row1, col0, col1 = window
    data = dataset.read(source.index, window=Window(col0, row0, col1 - col0, row1 - row0))
    resampling = resampling_for(source.band.resolution, abs(geobox.resolution.x), method)
    if resampling == Resampling.bilinear:
        lines, samples = _GEOLOCATIONS.get(str(dataset.name), model, geobox, terrain)
        nodata = source.nodata
        _sample_bilinear(data, row0, col0, nodata is not None, 0.0 if nodata is None else float(nodata), lines,
                         samples, destination)
        return
    reproject(
        source=data, destination=destination, rpcs=rpc.windowed(model, row0, col0), src_crs="EPSG:4326",
        src_nodata=source.nodata, dst_transform=geobox.affine, dst_crs=crs_wkt(geobox), dst_nodata=np.nan,
        init_dest_nodata=False, resampling=resampling, num_threads=threads, warp_mem_limit=256,
        **terrain.transformer_options(model),
    )


def warp_band(
    source: BandSource, geobox: GeoBox, method: ReflectanceResampling = ReflectanceResampling.bilinear,
    threads: int = 2, destination: NDArray[np.float32] | None = None, terrain: Terrain | None = None,
) -> NDArray[np.float32]:
    """The band's DN on ``geobox`` as float32, NaN wherever the input has no data.

    Coarsening by a whole factor on the input's own grid (10 m Sentinel-2 to 30 m on its tile) is a
    block mean of the decoded pixels, which equals GDAL's area average at a fraction of its cost;
    everything else goes through GDAL's warper, with the RPC model and ``terrain`` for images that have
    no map georeference. Either way only the input window under ``geobox`` is decoded, and it is decoded
    by a plain read, which fails loudly on a damaged file where the warper would log the error and carry on.
    """
    if destination is None:
        destination = np.empty(geobox.shape.yx, dtype=np.float32)
    destination.fill(np.nan)
    for path in source.paths:
        try:
            with rasterio.open(path) as dataset:
                if source.index > dataset.count:
                    raise InputError(path, f"has {dataset.count} bands, band {source.index} was expected")
                if dataset.crs is None:
                    _warp_rpc(dataset, source, geobox, method, threads, terrain or Terrain(), destination)
                    continue
                blocks = aligned_blocks(dataset, geobox)
                if blocks is not None:
                    _coarsen_aligned(dataset, source.index, source.nodata, geobox, blocks, destination)
                    continue
                window = source_window(dataset, geobox)
                if window is None:
                    continue
                reproject(
                    source=dataset.read(source.index, window=window),
                    destination=destination,
                    src_transform=dataset.window_transform(window),
                    src_crs=dataset.crs,
                    src_nodata=source.nodata,
                    dst_transform=geobox.affine,
                    dst_crs=crs_wkt(geobox),
                    dst_nodata=np.nan,
                    resampling=resampling_for(abs(dataset.res[0]), abs(geobox.resolution.x), method),
                    num_threads=threads,
                    warp_mem_limit=256,
                )
        except rasterio.RasterioIOError as exc:
            raise InputError(path, f"cannot read band {source.band.id}: {_root_cause(exc)}") from exc
    return destination


def read_overview(source: BandSource, geobox: GeoBox, terrain: Terrain | None = None) -> NDArray[np.float32]:
    """The band's DN averaged down onto ``geobox``, a decimation of its ``native_geobox``; NaN where no data.

    A decimated read, so GDAL decodes JPEG 2000 at a reduced resolution level and uses GeoTIFF
    overviews where there are any: a scene overview costs a fraction of a full read. An image known by
    its RPC model is read decimated as well, then placed with the decimated model.
    """
    shape = geobox.shape.yx
    values = np.full(shape, np.nan, dtype=np.float32)
    for path in source.paths:
        try:
            with rasterio.open(path) as dataset:
                if dataset.crs is not None:
                    values = dataset.read(source.index, out_shape=shape, resampling=Resampling.average).astype(np.float32)
                    if source.nodata is not None:
                        values[values == np.float32(source.nodata)] = np.nan
                    continue
                model = dataset.rpcs
                if model is None:
                    raise InputError(path, "has neither a map georeference nor an RPC model (its .rpb is missing)")
                factor = max(abs(geobox.resolution.x) / source.band.resolution, 1.0)
                rows, cols = max(round(dataset.height / factor), 1), max(round(dataset.width / factor), 1)
                # nearest keeps fill pixels out of the averages at the image edge
                data = dataset.read(source.index, out_shape=(rows, cols), resampling=Resampling.nearest)
                reproject(source=data, destination=values, rpcs=rpc.decimated(model, dataset.height / rows,
                                                                               dataset.width / cols),
                          src_crs="EPSG:4326", src_nodata=source.nodata, dst_transform=geobox.affine,
                          dst_crs=crs_wkt(geobox), dst_nodata=np.nan, init_dest_nodata=False,
                          resampling=Resampling.bilinear, **(terrain or Terrain()).transformer_options(model))
        except rasterio.RasterioIOError as exc:
            raise InputError(path, f"cannot read band {source.band.id}: {_root_cause(exc)}") from exc
    return values


def warp_to(source: rasterio.DatasetReader, index: int, geobox: GeoBox) -> NDArray[np.float32]:
    """Band ``index`` (0-based) of an open raster resampled bilinearly onto ``geobox``, scaled, nodata as NaN."""
    values = np.full(geobox.shape.yx, np.nan, dtype=np.float32)
    reproject(rasterio.band(source, index + 1), values, dst_transform=geobox.affine, dst_crs=crs_wkt(geobox),
              src_nodata=source.nodata, dst_nodata=np.nan, resampling=Resampling.bilinear)
    return values * np.float32(source.scales[index]) + np.float32(source.offsets[index])
