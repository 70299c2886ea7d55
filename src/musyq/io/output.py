"""Writing ARD layers: file names, value encodings and Cloud-Optimized GeoTIFFs written atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
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


def write_cog(
    path: Path, layer: Layer, geobox: GeoBox, tags: dict[str, str] | None = None,
    window: tuple[slice, slice] | None = None,
) -> Path:
    """Write ``layer`` as a COG at ``path`` through a temporary name, so no partial file is ever visible.

    With ``window``, ``layer.data`` covers only those rows and columns of ``geobox``; the rest is fill,
    and blocks that are fill throughout are left out of the file (a sparse COG) rather than stored.
    """
    data = layer.data if layer.data.ndim == 3 else layer.data[None]
    count = data.shape[0]
    height, width = geobox.shape.yx
    profile = {
        "driver": "GTiff", "count": count, "height": height, "width": width, "dtype": data.dtype.name,
        "crs": crs_wkt(geobox) if geobox.crs is not None else None,  # a user's raster may have none
        "transform": geobox.affine, "nodata": layer.nodata,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "sparse_ok": True,
    }
    rows, cols = window or (slice(0, height), slice(0, width))
    target = temporary_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with MemoryFile() as memory:
            with memory.open(**profile) as dataset:
                dataset.write(data, window=Window.from_slices(rows, cols))
                dataset.descriptions = layer.descriptions
                dataset.scales = (layer.scale,) * count
                dataset.offsets = (layer.offset,) * count
                if tags:
                    dataset.update_tags(**tags)
            with memory.open() as dataset:
                rasterio.shutil.copy(
                    dataset, target, driver="COG", compress="DEFLATE", predictor="2", blocksize=512,
                    overview_resampling=layer.resampling, num_threads="ALL_CPUS", bigtiff="IF_SAFER",
                    sparse_ok=True,
                )
        os.replace(target, path)
    finally:
        target.unlink(missing_ok=True)
    return path
