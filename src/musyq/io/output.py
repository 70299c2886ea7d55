"""Writing ARD layers: file names, value encodings and Cloud-Optimized GeoTIFFs written atomically."""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from numba import njit, prange
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from rasterio.io import MemoryFile
from rasterio.windows import Window

from musyq.core.grid import crs_wkt

REFLECTANCE_SCALE = 10_000
TEMPERATURE_SCALE = 100
ANGLE_SCALE = 100
ANGLE_NODATA = 65_535
PROBABILITY_NODATA = 255

# Quality layer codes shared by every stage.
FILL, CLEAR, WATER, CLOUD_SHADOW, SNOW, CLOUD = 0, 1, 2, 3, 4, 5
# Processing flags (the quality layer's second band): each stage sets its bit where it acted.
DATA, SURFACE_REFLECTANCE, NBAR, NBAR_PRIOR, COREGISTERED, BANDPASS, AOD_CLIMATOLOGY = 1, 2, 4, 8, 16, 32, 64
SATURATED = 128  # a band's DN at the detector's top: the reflectance there is a lower bound


@dataclass(frozen=True)
class ProductName:
    """``SENSOR.RESm.YYYYDDDHHMMSS.TILE.VERSION``; each layer appends ``.LAYER.tif``."""

    sensor: str
    resolution: float
    acquired: datetime
    tile: str
    version: str = "001"

    @property
    def item_id(self) -> str:
        return (f"{self.sensor}.{self.resolution:g}m.{self.acquired:%Y%j%H%M%S}."
                f"{self.tile}.{self.version}")

    def layer(self, name: str) -> str:
        return f"{self.item_id}.{name}.tif"


@dataclass(frozen=True)
class PeriodName:
    """``PRODUCT.RESm.YYYYMMDD-YYYYMMDD.TILE.VERSION`` for products of a period (composites, ARD+ months)."""

    product: str
    resolution: float
    start: date
    end: date
    tile: str
    version: str = "001"

    @property
    def item_id(self) -> str:
        return f"{self.product}.{self.resolution:g}m.{self.start:%Y%m%d}-{self.end:%Y%m%d}.{self.tile}.{self.version}"

    def layer(self, name: str) -> str:
        return f"{self.item_id}.{name}.tif"


@dataclass(frozen=True, eq=False)
class Layer:
    """An encoded layer ready to be written: integer bands plus how to read them back."""

    name: str
    data: NDArray[np.generic]
    nodata: float
    descriptions: tuple[str, ...]
    scale: float = 1.0
    offset: float = 0.0
    resampling: str = "average"


@njit(parallel=True, cache=True)
def _scale_to_uint16(
    values: NDArray[np.float32], scale: float, out: NDArray[np.uint16]
) -> None:  # pragma: no cover - compiled
    """One pass: ``rint(value * scale)`` clipped to 1..65535, non-finite values to fill 0."""
    for i in prange(values.size):
        value = values[i]
        if not np.isfinite(value):
            out[i] = 0
        else:
            scaled = np.rint(value * scale)
            out[i] = 1 if scaled < 1 else 65_535 if scaled > 65_535 else np.uint16(scaled)


def _encode(values: NDArray[np.float32], scale: float) -> NDArray[np.uint16]:
    source = np.ascontiguousarray(values, dtype=np.float32)
    encoded = np.empty(source.shape, dtype=np.uint16)
    _scale_to_uint16(source.reshape(-1), float(scale), encoded.reshape(-1))
    return encoded


def encode_reflectance(values: NDArray[np.float32]) -> NDArray[np.uint16]:
    """Reflectance to uint16 x 10000; fill (NaN) is 0, so valid values are kept at 1 or above."""
    return _encode(values, REFLECTANCE_SCALE)


def encode_temperature(values: NDArray[np.float32]) -> NDArray[np.uint16]:
    """Brightness temperature to uint16 kelvin x 100; fill is 0."""
    return _encode(values, TEMPERATURE_SCALE)


def encode_angles(values: NDArray[np.float32], valid: NDArray[np.bool_]) -> NDArray[np.uint16]:
    """Angles to uint16 degrees x 100; outside the data, 65535."""
    encoded = np.clip(np.rint(values * ANGLE_SCALE), 0, ANGLE_NODATA - 1).astype(np.uint16)
    encoded[:, ~valid] = ANGLE_NODATA
    return encoded


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


COG_BLOCK = 512
# DEFLATE, which every TIFF reader decodes, at level 1: on real Sentinel-2 DN with the horizontal predictor it
# stores as small as the default level 6 (161 against 164 MB for 4 x 5760 x 5760 px) and encodes 1.8x faster
DEFLATE_LEVEL = 1


def overview_shapes(height: int, width: int, block: int = COG_BLOCK) -> list[tuple[int, int]]:
    """The overview sizes GDAL's COG driver makes: halved, rounded up, until the image fits in one block."""
    shapes = []
    while height > block or width > block:
        height, width = (height + 1) // 2, (width + 1) // 2
        shapes.append((height, width))
    return shapes


AVERAGE, MODE, NEAREST = 0, 1, 2
_OVERVIEW_METHODS = {"average": AVERAGE, "mode": MODE, "nearest": NEAREST}


@njit(parallel=True, cache=True)
def _halve(
    values: NDArray[np.generic], row0: int, col0: int, nodata: float, method: int, integer: bool,
    out: NDArray[np.generic], out_row0: int, out_col0: int,
) -> None:  # pragma: no cover - compiled
    """One overview level from the one below it: each output pixel from its 2 x 2 source pixels.

    ``values`` holds the source level's rows and columns from ``row0, col0`` on (the rest is fill), ``out``
    the output level's from ``out_row0, out_col0``. Fill pixels are left out of the average and the mode;
    the mode's ties go to the higher value (cloud over clear in a quality layer).
    """
    bands, rows, cols = out.shape
    for index in prange(bands * rows):
        band, row = index // rows, index % rows
        window = np.empty(4, dtype=np.float64)
        for col in range(cols):
            count = 0
            for r in range(2 * (out_row0 + row) - row0, 2 * (out_row0 + row) - row0 + 2):
                for c in range(2 * (out_col0 + col) - col0, 2 * (out_col0 + col) - col0 + 2):
                    if method == NEAREST and count == 0:  # the block's first pixel, fill or not
                        inside = 0 <= r < values.shape[1] and 0 <= c < values.shape[2]
                        window[0] = values[band, r, c] if inside else nodata
                        count = 1
                    elif method != NEAREST and 0 <= r < values.shape[1] and 0 <= c < values.shape[2]:
                        value = values[band, r, c]
                        if value != nodata and value == value:
                            window[count] = value
                            count += 1
            if count == 0:
                out[band, row, col] = nodata
            elif method == AVERAGE:
                mean = window[:count].mean()
                out[band, row, col] = np.floor(mean + 0.5) if integer else mean
            elif method == MODE:
                best, best_count = window[0], 0
                for i in range(count):
                    same = 0
                    for j in range(count):
                        same += window[j] == window[i]
                    if same > best_count or (same == best_count and window[i] > best):
                        best, best_count = window[i], same
                out[band, row, col] = best
            else:
                out[band, row, col] = window[0]


def overview_levels(
    data: NDArray[np.generic], window: tuple[slice, slice], shape: tuple[int, int], nodata: float, resampling: str,
) -> list[tuple[NDArray[np.generic], tuple[slice, slice], tuple[int, int]]]:
    """The overview pyramid of ``data`` (bands, the ``window`` of a raster of ``shape``), each level with its
    window and shape: computed here in parallel because GDAL's own overview building runs on one core and, with its
    temporary file, takes longer than compressing the full resolution."""
    if resampling not in _OVERVIEW_METHODS:
        raise ValueError(f"overview resampling {resampling!r}: not one of {sorted(_OVERVIEW_METHODS)}")
    levels = []
    rows, cols = window
    for height, width in overview_shapes(*shape):
        out_rows = slice(rows.start // 2, min((rows.stop + 1) // 2, height))
        out_cols = slice(cols.start // 2, min((cols.stop + 1) // 2, width))
        out = np.empty((data.shape[0], out_rows.stop - out_rows.start, out_cols.stop - out_cols.start), data.dtype)
        _halve(data, rows.start, cols.start, float(nodata), _OVERVIEW_METHODS[resampling],
               bool(np.issubdtype(data.dtype, np.integer)), out, out_rows.start, out_cols.start)
        levels.append((out, (out_rows, out_cols), (height, width)))
        data, rows, cols = out, out_rows, out_cols
    return levels


def _with_overviews(vrt: bytes, overviews: list[str]) -> bytes:
    """A GDAL VRT of the full resolution whose bands name ``overviews`` (files) as their overviews."""
    root = ElementTree.fromstring(vrt)
    for band in root.iter("VRTRasterBand"):
        for name in overviews:
            overview = ElementTree.SubElement(band, "Overview")
            ElementTree.SubElement(overview, "SourceFilename", relativeToVRT="0").text = name
            ElementTree.SubElement(overview, "SourceBand").text = band.get("band")
    return ElementTree.tostring(root)


def write_cog(
    path: Path, layer: Layer, geobox: GeoBox, tags: dict[str, str] | None = None,
    window: tuple[slice, slice] | None = None,
) -> Path:
    """Write ``layer`` as a COG at ``path`` through a temporary name, so no partial file is ever visible.

    With ``window``, ``layer.data`` covers only those rows and columns of ``geobox``; the rest is fill,
    and blocks that are fill throughout are left out of the file (a sparse COG) rather than stored.
    The overviews are made here (``overview_levels``) and handed to GDAL's COG driver through a VRT.
    """
    data = layer.data if layer.data.ndim == 3 else layer.data[None]
    count = data.shape[0]
    height, width = geobox.shape.yx
    profile = {
        "driver": "GTiff", "count": count, "height": height, "width": width, "dtype": data.dtype.name,
        "crs": crs_wkt(geobox) if geobox.crs is not None else None,  # a user's raster may have none
        "transform": geobox.affine, "nodata": layer.nodata,
        "tiled": True, "blockxsize": COG_BLOCK, "blockysize": COG_BLOCK, "sparse_ok": True,
    }
    rows, cols = window or (slice(0, height), slice(0, width))
    levels = overview_levels(data, (rows, cols), (height, width), layer.nodata, layer.resampling)
    target = temporary_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as files:
        memory = files.enter_context(MemoryFile())
        with memory.open(**profile) as dataset:
            dataset.write(data, window=Window.from_slices(rows, cols))
            dataset.descriptions = layer.descriptions
            dataset.scales = (layer.scale,) * count
            dataset.offsets = (layer.offset,) * count
            if tags:
                dataset.update_tags(**tags)
        names = []
        for values, (level_rows, level_cols), (level_height, level_width) in levels:
            level = files.enter_context(MemoryFile())
            scale = Affine.scale(width / level_width, height / level_height)
            with level.open(**dict(profile, height=level_height, width=level_width,
                                   transform=geobox.affine * scale)) as dataset:
                dataset.write(values, window=Window.from_slices(level_rows, level_cols))
            names.append(level.name)
        vrt = files.enter_context(MemoryFile(ext=".vrt"))
        with memory.open() as dataset:
            rasterio.shutil.copy(dataset, vrt.name, driver="VRT")
        source = files.enter_context(MemoryFile(_with_overviews(vrt.read(), names), ext=".vrt"))
        try:
            with source.open() as dataset:
                rasterio.shutil.copy(
                    dataset, target, driver="COG", compress="DEFLATE", level=DEFLATE_LEVEL, predictor="2",
                    blocksize=COG_BLOCK, num_threads="ALL_CPUS", bigtiff="IF_SAFER", sparse_ok=True,
                )
            os.replace(target, path)
        finally:
            target.unlink(missing_ok=True)
    return path
