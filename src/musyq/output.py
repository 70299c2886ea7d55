"""Writing ARD layers: file names, value encodings and Cloud-Optimized GeoTIFFs written atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from rasterio.io import MemoryFile

REFLECTANCE_SCALE = 10_000
TEMPERATURE_SCALE = 100
ANGLE_SCALE = 100
ANGLE_NODATA = 65_535

# Quality layer codes shared by every stage.
FILL, CLEAR, WATER, CLOUD_SHADOW, SNOW, CLOUD = 0, 1, 2, 3, 4, 5


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


def encode_reflectance(values: NDArray[np.float32]) -> NDArray[np.uint16]:
    """Reflectance to uint16 x 10000; fill (NaN) is 0, so valid values are kept at 1 or above."""
    scaled = np.rint(values * REFLECTANCE_SCALE)
    encoded = np.clip(scaled, 1, 65_535)
    encoded[~np.isfinite(values)] = 0
    return encoded.astype(np.uint16)


def encode_temperature(values: NDArray[np.float32]) -> NDArray[np.uint16]:
    """Brightness temperature to uint16 kelvin x 100; fill is 0."""
    encoded = np.clip(np.rint(values * TEMPERATURE_SCALE), 1, 65_535)
    encoded[~np.isfinite(values)] = 0
    return encoded.astype(np.uint16)


def encode_angles(values: NDArray[np.float32], valid: NDArray[np.bool_]) -> NDArray[np.uint16]:
    """Angles to uint16 degrees x 100; outside the data, 65535."""
    encoded = np.clip(np.rint(values * ANGLE_SCALE), 0, ANGLE_NODATA - 1).astype(np.uint16)
    encoded[:, ~valid] = ANGLE_NODATA
    return encoded


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def write_cog(path: Path, layer: Layer, geobox: GeoBox, tags: dict[str, str] | None = None) -> Path:
    """Write ``layer`` as a COG at ``path`` through a temporary name, so no partial file is ever visible."""
    data = layer.data if layer.data.ndim == 3 else layer.data[None]
    count, height, width = data.shape
    profile = {
        "driver": "GTiff", "count": count, "height": height, "width": width, "dtype": data.dtype.name,
        "crs": geobox.crs.to_wkt(), "transform": geobox.affine, "nodata": layer.nodata,
    }
    target = temporary_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with MemoryFile() as memory:
            with memory.open(**profile) as dataset:
                dataset.write(data)
                dataset.descriptions = layer.descriptions
                dataset.scales = (layer.scale,) * count
                dataset.offsets = (layer.offset,) * count
                if tags:
                    dataset.update_tags(**tags)
            with memory.open() as dataset:
                rasterio.shutil.copy(
                    dataset, target, driver="COG", compress="DEFLATE", predictor="2", blocksize=512,
                    overview_resampling=layer.resampling, num_threads="ALL_CPUS", bigtiff="IF_SAFER",
                )
        os.replace(target, path)
    finally:
        target.unlink(missing_ok=True)
    return path
