"""Band files with no product metadata: the user names the sensor and the acquisition time.

Recognises a folder of single-band rasters whose names carry the band id (``s2_B04.jp2``,
``LC08_B5.TIF``), or one multi-band raster whose band descriptions are band ids or common names.
The digital numbers are taken as reflectance times ``scale`` plus ``offset`` (Sentinel-2 L1C style);
sun angles come from the solar position, the view is assumed nadir.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import rasterio
from odc.geo.geom import box

from musyq.core.angles import SolarPositionAngles
from musyq.core.errors import InputError
from musyq.core.scene import BandSource, ScaledReflectance, Scene
from musyq.core.sensors import Band, Sensor, get_sensor
from musyq.core.solar import earth_sun_distance

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".img", ".vrt"}
BAND_IN_NAME = re.compile(r"(?:^|[_\-.])B(\d{1,2})(A?)(?=[_\-.]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class StackOptions:
    """What the metadata would have said: sensor, time, and how DN map to reflectance."""

    sensor: str
    acquired: datetime
    scale: float = 10000.0
    offset: float = 0.0
    nodata: float | None = 0


def _match_band(sensor: Sensor, filename: str) -> Band | None:
    for match in BAND_IN_NAME.finditer(Path(filename).stem):
        number, suffix = int(match.group(1)), match.group(2).upper()
        for band in sensor.bands:
            found = re.fullmatch(r"B(\d+)(A?)", band.id)
            if found and int(found.group(1)) == number and found.group(2) == suffix:
                return band
    return None


def stack_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
    return [path] if path.suffix.lower() in RASTER_SUFFIXES else []


class BandStackReader:
    """Plain band files; needs ``StackOptions`` because nothing in the files says what they are."""

    name = "band-stack"

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options

    def can_read(self, path: Path) -> bool:
        return bool(stack_files(path))

    def open(self, path: Path) -> Scene:
        if self.options is None:
            raise InputError(path, "plain band files carry no metadata: give the sensor and the acquisition "
                                   "time (--sensor, --datetime)")
        options = self.options
        sensor = get_sensor(options.sensor)
        calibration = ScaledReflectance(options.scale, options.offset)
        sources: dict[str, BandSource] = {}
        for file in stack_files(path):
            try:
                with rasterio.open(file) as dataset:
                    descriptions = dataset.descriptions
                    count = dataset.count
            except rasterio.RasterioIOError as exc:
                raise InputError(file, f"not a readable raster ({exc})") from exc
            if count > 1:
                for index, description in enumerate(descriptions, start=1):
                    named = sensor.reflective_bands[index - 1] if description is None else sensor.band(description)
                    sources.setdefault(named.id, BandSource(named, str(file), calibration, index, options.nodata))
                continue
            band = _match_band(sensor, file.name)
            if band is not None and band.kind == "reflectance":
                sources.setdefault(band.id, BandSource(band, str(file), calibration, 1, options.nodata))
        if not sources:
            raise InputError(path, f"no file name carries a {sensor.id} band id (such as _B04)")
        ordered = tuple(sources[b.id] for b in sensor.bands if b.id in sources)
        missing = [b.id for b in sensor.reflective_bands if b.id not in sources]
        notes = ["no product metadata: sun angles computed from the given time, view assumed nadir"]
        if missing:
            notes.append(f"bands absent: {', '.join(missing)}")
        for note in notes:
            warnings.warn(f"{path}: {note}", stacklevel=2)
        with rasterio.open(ordered[0].path) as dataset:
            crs = dataset.crs.to_string()
            bounds = dataset.bounds
        return Scene(
            product_id=path.stem,
            product_path=str(path),
            reader=self.name,
            sensor=sensor,
            acquired=options.acquired,
            crs=crs,
            footprint=box(bounds.left, bounds.bottom, bounds.right, bounds.top, crs),
            bands=ordered,
            angles=SolarPositionAngles(options.acquired),
            earth_sun_distance=float(earth_sun_distance(options.acquired.timetuple().tm_yday)),
            metadata={"scale": options.scale, "offset": options.offset},
            warnings=tuple(notes),
        )
