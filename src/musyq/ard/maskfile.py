"""The cloud mask of a reflectance raster a user brings: read it by band names, mask it, write COGs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox

from musyq.ard.cloudmask import MaskInputs, MaskMethod, MaskResult, compute_mask
from musyq.core.errors import InputError, SensorError
from musyq.io.output import FILL, PROBABILITY_NODATA, Layer, write_cog
from musyq.core.sensors import get_sensor

THERMAL_NAMES = ("lwir11", "lwir")
QUALITY_DESCRIPTION = "quality: 0 fill, 1 clear, 2 water, 3 cloud shadow, 4 snow, 5 cloud"


@dataclass(frozen=True)
class ReflectanceRaster:
    """TOA reflectance by common band name, brightness temperature (K) if present, and the pixel grid."""

    bands: dict[str, NDArray[np.float32]]
    brightness_temperature: NDArray[np.float32] | None
    valid: NDArray[np.bool_]
    geobox: GeoBox
    pixel_size: float


def _band_names(path: Path, descriptions: tuple[str | None, ...], sensor_id: str | None,
                given: tuple[str, ...] | None = None) -> list[str]:
    """Common names of the raster's bands: as given, from the descriptions, or the sensor's reflective band order."""
    if given is not None:
        if len(given) != len(descriptions):
            raise InputError(path, f"{len(given)} band names given ({', '.join(given)}) for {len(descriptions)} bands")
        return [name.strip().lower() for name in given]
    sensor = get_sensor(sensor_id) if sensor_id else None
    if all(d is None or not d.strip() for d in descriptions):
        if sensor is None:
            raise InputError(path, "the bands carry no descriptions: name them (blue, green, red, nir, ...) with "
                                   "--bands, or give --sensor to take the sensor's band order")
        names = [b.common_name for b in sensor.reflective_bands]
        if len(descriptions) > len(names):
            raise InputError(path, f"{len(descriptions)} bands but {sensor.id} has {len(names)} reflective bands")
        return names[:len(descriptions)]
    names = []
    for index, description in enumerate(descriptions, start=1):
        text = (description or "").strip()
        if sensor is not None and text:
            try:
                text = sensor.band(text).common_name
            except SensorError:
                pass
        names.append(text.lower() or f"band{index}")
    return names


def read_reflectance(path: Path, sensor_id: str | None = None, scale: float = 10_000.0,
                     band_names: tuple[str, ...] | None = None, pixel_size: float | None = None) -> ReflectanceRaster:
    """Read a multi-band TOA reflectance raster whose band descriptions (or ``band_names``) are common band names.

    Integer bands are divided by their scale tag, or by ``scale`` where they have none; a thermal
    band (``lwir11``/``lwir``) is read in kelvin after its own scale and offset tags. A raster without
    a coordinate reference system (labelled patches often have none) needs ``pixel_size`` in metres.
    """
    if pixel_size is not None and not pixel_size > 0:
        raise InputError(path, f"--pixel-size {pixel_size} is not a positive number of metres")
    try:
        with rasterio.open(path) as dataset:
            names = _band_names(path, dataset.descriptions, sensor_id, band_names)
            data = dataset.read().astype(np.float32)
            valid = (dataset.read_masks() > 0).all(axis=0)
            scales, offsets = dataset.scales, dataset.offsets
            integer = np.issubdtype(np.dtype(dataset.dtypes[0]), np.integer)
            if dataset.crs is None and pixel_size is None:
                raise InputError(path, "the raster has no coordinate reference system: give --pixel-size (the "
                                       "shadow search and the trees need the pixel size in metres)")
            geobox = GeoBox((dataset.height, dataset.width), dataset.transform, dataset.crs)
            pixel_size = float(abs(dataset.transform.a)) if pixel_size is None else pixel_size
    except rasterio.RasterioIOError as exc:
        raise InputError(path, f"not a readable raster ({exc})") from None
    bands: dict[str, NDArray[np.float32]] = {}
    temperature = None
    for index, name in enumerate(names):
        values = data[index]
        tagged = scales[index] != 1.0 or offsets[index] != 0.0
        if name in THERMAL_NAMES:
            temperature = values * np.float32(scales[index]) + np.float32(offsets[index])
            continue
        if tagged:
            values = values * np.float32(scales[index]) + np.float32(offsets[index])
        elif integer:
            values = values / np.float32(scale)
        bands[name] = values
    valid &= np.isfinite(data).all(axis=0)
    return ReflectanceRaster(bands, temperature, valid, geobox, pixel_size)


def mask_file(
    path: Path, out: Path, sun_zenith: float, sun_azimuth: float, view_zenith: float = 0.0,
    view_azimuth: float = 0.0, sensor_id: str | None = None, method: MaskMethod = MaskMethod.musyq,
    cloud_buffer_m: float | None = None, shadow_buffer_m: float | None = None, probability_out: Path | None = None,
    scale: float = 10_000.0, band_names: tuple[str, ...] | None = None, pixel_size: float | None = None,
) -> MaskResult:
    """Mask ``path`` and write the quality codes to ``out`` (and the cloud probability, if asked) as COGs."""
    raster = read_reflectance(path, sensor_id, scale, band_names, pixel_size)
    for name, value, limit in (("--sun-zenith", sun_zenith, 90.0), ("--view-zenith", view_zenith, 80.0)):
        if not 0.0 <= value < limit:
            raise InputError(path, f"{name} {value} is outside 0..{limit:g} degrees")
    inputs = MaskInputs(raster.bands, sun_zenith, sun_azimuth, raster.pixel_size, view_zenith, view_azimuth,
                        raster.brightness_temperature, raster.valid, str(path))
    result = compute_mask(inputs, method, cloud_buffer_m, shadow_buffer_m)
    tags = {"mask_method": MaskMethod(method).value, "source": path.name}
    write_cog(out, Layer("MASK", result.quality, FILL, (QUALITY_DESCRIPTION,), resampling="mode"), raster.geobox,
              tags)
    if probability_out is not None:
        probability = np.where(result.quality != FILL, result.cloud_probability, PROBABILITY_NODATA).astype(np.uint8)
        write_cog(probability_out, Layer("CLOUDPROB", probability, PROBABILITY_NODATA, ("cloud_probability",)),
                  raster.geobox, tags)
    return result
