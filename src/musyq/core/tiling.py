"""Putting a scene's bands on a tile's pixel grid.

Digital numbers are warped before calibration: calibration is affine in DN (Sentinel-2 exactly, Landsat
up to the slowly varying 1/cos(sun zenith)), so warping first gives the same values while calibrating
only the output pixels, which at 30 m are a ninth of the 10 m input.
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np
import rasterio
import rasterio.io
from numba import njit
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from musyq.core.errors import InputError
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


def warp_band(
    source: BandSource, geobox: GeoBox, method: ReflectanceResampling = ReflectanceResampling.bilinear,
    threads: int = 2, destination: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """The band's DN on ``geobox`` as float32, NaN wherever the input has no data.

    Coarsening by a whole factor on the input's own grid (10 m Sentinel-2 to 30 m on its tile) is a
    block mean of the decoded pixels, which equals GDAL's area average at a fraction of its cost;
    everything else goes through GDAL's warper. Either way only the input window under ``geobox`` is
    decoded, and it is decoded by a plain read, which fails loudly on a damaged file where the warper
    would log the error and carry on.
    """
    if destination is None:
        destination = np.empty(geobox.shape.yx, dtype=np.float32)
    destination.fill(np.nan)
    try:
        with rasterio.open(source.path) as dataset:
            if source.index > dataset.count:
                raise InputError(source.path, f"has {dataset.count} bands, band {source.index} was expected")
            blocks = aligned_blocks(dataset, geobox)
            if blocks is not None:
                _coarsen_aligned(dataset, source.index, source.nodata, geobox, blocks, destination)
                return destination
            window = source_window(dataset, geobox)
            if window is None:
                return destination
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
        raise InputError(source.path, f"cannot read band {source.band.id}: {_root_cause(exc)}") from exc
    return destination


def read_overview(source: BandSource, shape: tuple[int, int]) -> NDArray[np.float32]:
    """The band's DN averaged down to ``shape`` over its own full extent, NaN where it has no data.

    A decimated read, so GDAL decodes JPEG 2000 at a reduced resolution level and uses GeoTIFF
    overviews where there are any: a scene overview costs a fraction of a full read.
    """
    try:
        with rasterio.open(source.path) as dataset:
            values = dataset.read(source.index, out_shape=shape, resampling=Resampling.average).astype(np.float32)
    except rasterio.RasterioIOError as exc:
        raise InputError(source.path, f"cannot read band {source.band.id}: {_root_cause(exc)}") from exc
    if source.nodata is not None:
        values[values == np.float32(source.nodata)] = np.nan
    return np.asarray(values, dtype=np.float32)

