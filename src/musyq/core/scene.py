"""What a reader hands to the pipeline: where each band's pixels are and how they become TOA values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from musyq.core.angles import AngleModel
from musyq.core.sensors import Band, Sensor


@dataclass(frozen=True)
class ScaledReflectance:
    """Reflectance stored as ``(DN + offset) / quantification`` (Sentinel-2 L1C)."""

    quantification: float
    offset: float = 0.0


@dataclass(frozen=True)
class RescaledReflectance:
    """Planetary reflectance ``mult * DN + add`` still to be divided by cos(sun zenith) (Landsat)."""

    mult: float
    add: float


@dataclass(frozen=True)
class RadianceCalibration:
    """Radiance ``gain * DN + bias`` with the band's solar irradiance (Gaofen WFV)."""

    gain: float
    bias: float
    solar_irradiance: float


@dataclass(frozen=True)
class ThermalCalibration:
    """Radiance ``mult * DN + add`` inverted to brightness temperature with ``K1``, ``K2``."""

    mult: float
    add: float
    k1: float
    k2: float


Calibration = ScaledReflectance | RescaledReflectance | RadianceCalibration | ThermalCalibration


@dataclass(frozen=True)
class BandSource:
    """One band of a scene: the raster holding it, which band of that raster, and its calibration."""

    band: Band
    path: str
    calibration: Calibration
    index: int = 1
    nodata: float | None = 0
    parts: tuple[str, ...] = ()  # further rasters holding other parts of the band (Gaofen-6 column strips)
    saturated: float | None = None  # the DN at which the detector clips, where the product says

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *self.parts)


@dataclass(frozen=True)
class Scene:
    """A Level-1 acquisition as read from its product, independent of the product format."""

    product_id: str
    product_path: str
    reader: str
    sensor: Sensor
    acquired: datetime
    crs: str
    footprint: Geometry
    bands: tuple[BandSource, ...]
    angles: AngleModel
    earth_sun_distance: float
    metadata: dict[str, str | float | int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def source(self, band_id: str) -> BandSource:
        for source in self.bands:
            if source.band.id == band_id:
                return source
        raise KeyError(band_id)

    @property
    def reflective_sources(self) -> tuple[BandSource, ...]:
        return tuple(s for s in self.bands if s.band.kind == "reflectance")

    @property
    def thermal_sources(self) -> tuple[BandSource, ...]:
        return tuple(s for s in self.bands if s.band.kind == "thermal")

    @property
    def band_ids(self) -> tuple[str, ...]:
        return tuple(s.band.id for s in self.bands)

    @property
    def missing_bands(self) -> tuple[str, ...]:
        present = set(self.band_ids)
        return tuple(b for b in self.sensor.band_ids if b not in present)

    def native_geobox(self, band_id: str) -> GeoBox:
        """The pixel grid a band is stored on; for an image known only by its RPC model, the grid of the
        scene's map projection at the band's resolution that holds the footprint."""
        import rasterio

        source = self.source(band_id)
        with rasterio.open(source.path) as dataset:
            if dataset.crs is not None:
                return GeoBox((dataset.height, dataset.width), dataset.transform, dataset.crs)
        resolution = source.band.resolution
        left, bottom, right, top = self.footprint.to_crs(self.crs).boundingbox
        left, top = math.floor(left / resolution) * resolution, math.ceil(top / resolution) * resolution
        shape = (math.ceil((top - bottom) / resolution), math.ceil((right - left) / resolution))
        return GeoBox(shape, Affine(resolution, 0, left, 0, -resolution, top), self.crs)
