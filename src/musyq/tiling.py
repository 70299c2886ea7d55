"""Putting a scene's bands on a tile's pixel grid.

Digital numbers are warped before calibration: calibration is affine in DN (Sentinel-2 exactly, Landsat
up to the slowly varying 1/cos(sun zenith)), so warping first gives the same values while calibrating
only the output pixels, which at 30 m are a ninth of the 10 m input.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import rasterio
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.warp import reproject

from musyq.errors import InputError
from musyq.scene import BandSource


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


def warp_band(
    source: BandSource, geobox: GeoBox, method: ReflectanceResampling = ReflectanceResampling.bilinear,
    threads: int = 2,
) -> NDArray[np.float32]:
    """The band's DN on ``geobox`` as float32, NaN wherever the input has no data."""
    destination = np.full(geobox.shape.yx, np.nan, dtype=np.float32)
    try:
        with rasterio.open(source.path) as dataset:
            if source.index > dataset.count:
                raise InputError(source.path, f"has {dataset.count} bands, band {source.index} was expected")
            resampling = resampling_for(abs(dataset.res[0]), abs(geobox.resolution.x), method)
            reproject(
                source=rasterio.band(dataset, source.index),
                destination=destination,
                src_nodata=source.nodata,
                dst_transform=geobox.affine,
                dst_crs=geobox.crs.to_wkt(),
                dst_nodata=np.nan,
                resampling=resampling,
                num_threads=threads,
                warp_mem_limit=256,
            )
    except rasterio.RasterioIOError as exc:
        raise InputError(source.path, f"cannot read band {source.band.id} ({exc})") from exc
    return destination
