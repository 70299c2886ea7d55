"""Landsat Level-1 products (Collection 2, Collection 1 and pre-collection) described by an MTL file."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from odc.geo.geom import polygon

from musyq.core.angles import AngleGrids, AngleModel, EphemerisAngles, SolarPositionAngles, fill_gaps
from musyq.core.errors import InputError, UnknownProductError
from musyq.io.readers.odl import Group, find_value, read_metadata_file
from musyq.core.scene import BandSource, RescaledReflectance, Scene, ThermalCalibration
from musyq.core.sensors import get_sensor
from musyq.core.solar import earth_sun_distance

MTL_NAME = re.compile(r"_MTL\.(txt|xml|json)$", re.IGNORECASE)
BAND_KEY = re.compile(r"^FILE_NAME_BAND_(\w+)$")
# Pixel spacing of the decimated angle bands used as an angle grid.
ANGLE_GRID_STEP_PIXELS = 30


@dataclass(frozen=True)
class LandsatMetadata:
    """The calibration and geometry facts of an MTL file."""

    spacecraft: str
    product_id: str
    processing_level: str
    acquired: datetime
    band_files: dict[str, str]
    reflectance: dict[str, tuple[float, float]]
    radiance: dict[str, tuple[float, float]]
    thermal: dict[str, tuple[float, float]]
    quantize_max: dict[str, float]  # the top DN of each band, which a saturated detector reads
    angle_files: dict[str, str]
    sun_azimuth: float
    sun_elevation: float
    earth_sun_distance: float | None
    corners_lonlat: tuple[tuple[float, float], ...]


def _required(groups: Group, key: str, source: Path, prefer: str = "") -> Any:
    value = find_value(groups, key, prefer)
    if value is None:
        raise InputError(source, f"MTL has no {key}")
    return value


def parse_mtl(groups: Group, source: Path) -> LandsatMetadata:
    """Turn parsed MTL groups of any collection into ``LandsatMetadata``."""
    spacecraft = str(_required(groups, "SPACECRAFT_ID", source))
    date = str(_required(groups, "DATE_ACQUIRED", source))
    clock = str(find_value(groups, "SCENE_CENTER_TIME") or "12:00:00").rstrip("Z")
    hours, minutes, seconds = clock.split(":")
    whole, _, fraction = seconds.partition(".")
    acquired = datetime.fromisoformat(f"{date}T{int(hours):02d}:{int(minutes):02d}:{int(whole):02d}") \
        .replace(microsecond=int((fraction + "000000")[:6]))
    level = str(find_value(groups, "PROCESSING_LEVEL") or find_value(groups, "DATA_TYPE") or "")
    product_id = str(find_value(groups, "LANDSAT_PRODUCT_ID") or _required(groups, "LANDSAT_SCENE_ID", source))

    band_files: dict[str, str] = {}
    angle_files: dict[str, str] = {}
    reflectance: dict[str, tuple[float, float]] = {}
    radiance: dict[str, tuple[float, float]] = {}
    thermal: dict[str, tuple[float, float]] = {}
    quantize_max: dict[str, float] = {}

    def walk(node: Group) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value)
                continue
            match = BAND_KEY.match(key)
            if match:
                band_files.setdefault("B" + match.group(1), str(value))
            elif key.startswith("FILE_NAME_ANGLE_") and "BAND_4" in key:
                kind = key.removeprefix("FILE_NAME_ANGLE_").removesuffix("_BAND_4")
                angle_files[kind] = str(value)

    walk(groups)
    for band in band_files:
        suffix = band[1:]
        mult = find_value(groups, f"REFLECTANCE_MULT_BAND_{suffix}", "RADIOMETRIC_RESCALING")
        add = find_value(groups, f"REFLECTANCE_ADD_BAND_{suffix}", "RADIOMETRIC_RESCALING")
        if mult is not None and add is not None:
            reflectance[band] = (float(mult), float(add))
        mult = find_value(groups, f"RADIANCE_MULT_BAND_{suffix}", "RADIOMETRIC_RESCALING")
        add = find_value(groups, f"RADIANCE_ADD_BAND_{suffix}", "RADIOMETRIC_RESCALING")
        if mult is not None and add is not None:
            radiance[band] = (float(mult), float(add))
        k1 = find_value(groups, f"K1_CONSTANT_BAND_{suffix}")
        k2 = find_value(groups, f"K2_CONSTANT_BAND_{suffix}")
        if k1 is not None and k2 is not None:
            thermal[band] = (float(k1), float(k2))
        top = find_value(groups, f"QUANTIZE_CAL_MAX_BAND_{suffix}")
        if top is not None:
            quantize_max[band] = float(top)
    corners = tuple(
        (float(_required(groups, f"CORNER_{c}_LON_PRODUCT", source)), float(_required(groups, f"CORNER_{c}_LAT_PRODUCT", source)))
        for c in ("UL", "UR", "LR", "LL")
    )
    distance = find_value(groups, "EARTH_SUN_DISTANCE")
    return LandsatMetadata(
        spacecraft=spacecraft,
        product_id=product_id,
        processing_level=level,
        acquired=acquired,
        band_files=band_files,
        reflectance=reflectance,
        radiance=radiance,
        thermal=thermal,
        quantize_max=quantize_max,
        angle_files=angle_files,
        sun_azimuth=float(_required(groups, "SUN_AZIMUTH", source)),
        sun_elevation=float(_required(groups, "SUN_ELEVATION", source)),
        earth_sun_distance=float(distance) if distance is not None else None,
        corners_lonlat=corners,
    )


def _angle_grid(files: dict[str, Path]) -> AngleGrids:
    """Read the Collection 2 per-pixel angle bands (degrees x 100) decimated into an angle grid."""
    layers = {}
    for kind, path in files.items():
        with rasterio.open(path) as dataset:
            step = ANGLE_GRID_STEP_PIXELS
            shape = (max(dataset.height // step, 2), max(dataset.width // step, 2))
            data = dataset.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest).astype(float) / 100
            x_step = dataset.width / shape[1] * dataset.res[0]
            y_step = dataset.height / shape[0] * dataset.res[1]
            origin = dataset.transform @ (0.5 * dataset.width / shape[1], 0.5 * dataset.height / shape[0])
            crs = dataset.crs.to_string()
        layers[kind] = np.where(data == 0, np.nan, data)
    return AngleGrids(
        crs=crs, origin_x=origin[0], origin_y=origin[1], step=float(np.mean([x_step, y_step])),
        sun_zenith=fill_gaps(layers["SOLAR_ZENITH"]), sun_azimuth=fill_gaps(layers["SOLAR_AZIMUTH"]),
        view_zenith=fill_gaps(layers["SENSOR_ZENITH"]), view_azimuth=fill_gaps(layers["SENSOR_AZIMUTH"]),
    )


def read_track(path: Path) -> np.ndarray:
    """The satellite's ECEF positions (metres, one row per sample) from an ANG angle-coefficient file."""
    groups = read_metadata_file(path)
    columns = [find_value(groups, f"EPHEMERIS_ECEF_{axis}", "EPHEMERIS") for axis in "XYZ"]
    if any(c is None for c in columns):
        raise InputError(path, "ANG file has no EPHEMERIS_ECEF_X/Y/Z")
    track = np.stack([np.asarray(c, dtype=float) for c in columns], axis=1)
    radius = np.linalg.norm(track, axis=1)
    if track.shape[0] < 3 or not np.all((radius > 6.5e6) & (radius < 8.0e6)):
        raise InputError(path, "ANG ephemeris is not an orbit (needs at least 3 ECEF samples 100-1600 km up)")
    return track


def find_ang(mtl_path: Path, groups: Group) -> Path | None:
    named = find_value(groups, "FILE_NAME_ANGLE_COEFFICIENT")
    candidates = [mtl_path.parent / str(named)] if named else []
    candidates += sorted(mtl_path.parent.glob("*_ANG.txt"))
    return next((c for c in candidates if c.is_file()), None)


def find_mtl(path: Path) -> Path | None:
    if path.is_file():
        return path if MTL_NAME.search(path.name) else None
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if MTL_NAME.search(p.name))
        # Prefer the ODL text, then XML, then JSON: all carry the same facts.
        order = {".txt": 0, ".xml": 1, ".json": 2}
        candidates.sort(key=lambda p: order.get(p.suffix.lower(), 3))
        return candidates[0] if candidates else None
    return None


class LandsatReader:
    """Landsat 5/7/8/9 Level-1: a folder of band GeoTIFFs with its MTL, or the MTL file itself."""

    name = "landsat-mtl"

    def can_read(self, path: Path) -> bool:
        return find_mtl(path) is not None

    def open(self, path: Path) -> Scene:
        mtl_path = find_mtl(path)
        assert mtl_path is not None
        groups = read_metadata_file(mtl_path)
        meta = parse_mtl(groups, mtl_path)
        if meta.processing_level.startswith("L2"):
            raise UnknownProductError(mtl_path, f"{meta.processing_level} is a Level-2 product; musyq reads Level-1")
        sensor = get_sensor(meta.spacecraft)
        folder = mtl_path.parent
        sources, missing = [], []
        for band in sensor.bands:
            filename = meta.band_files.get(band.id)
            file = folder / filename if filename else None
            if file is None or not file.exists():
                missing.append(band.id)
                continue
            if band.kind == "thermal":
                if band.id not in meta.thermal or band.id not in meta.radiance:
                    raise InputError(mtl_path, f"MTL lacks the thermal constants of band {band.id}")
                calibration: RescaledReflectance | ThermalCalibration = ThermalCalibration(
                    *meta.radiance[band.id], *meta.thermal[band.id])
            else:
                if band.id not in meta.reflectance:
                    raise InputError(mtl_path, f"MTL lacks REFLECTANCE_MULT/ADD for band {band.id}")
                calibration = RescaledReflectance(*meta.reflectance[band.id])
            sources.append(BandSource(band=band, path=str(file), calibration=calibration,
                                      saturated=meta.quantize_max.get(band.id) if band.kind != "thermal" else None))
        if not sources:
            raise InputError(folder, f"none of the band files named in {mtl_path.name} is present")
        notes = []
        if missing:
            notes.append(f"bands absent from the product: {', '.join(missing)}")
        angle_paths = {k: folder / v for k, v in meta.angle_files.items()}
        angles: AngleModel
        if len(angle_paths) == 4 and all(p.exists() for p in angle_paths.values()):
            angles = _angle_grid(angle_paths)
        elif (ang_path := find_ang(mtl_path, groups)) is not None:
            angles = EphemerisAngles(meta.acquired, read_track(ang_path))
        else:
            angles = SolarPositionAngles(meta.acquired)
            notes.append("no angle bands or ANG file: sun angles computed per pixel from the scene time, "
                         "view assumed nadir")
        for note in notes:
            warnings.warn(f"{path}: {note}", stacklevel=2)
        with rasterio.open(sources[0].path) as dataset:
            crs = dataset.crs.to_string()
        distance = meta.earth_sun_distance or float(earth_sun_distance(meta.acquired.timetuple().tm_yday))
        return Scene(
            product_id=meta.product_id,
            product_path=str(path),
            reader=self.name,
            sensor=sensor,
            acquired=meta.acquired,
            crs=crs,
            footprint=polygon(list(meta.corners_lonlat) + [meta.corners_lonlat[0]], "EPSG:4326"),
            bands=tuple(sources),
            angles=angles,
            earth_sun_distance=distance,
            metadata={"sun_azimuth": meta.sun_azimuth, "sun_elevation": meta.sun_elevation,
                      "processing_level": meta.processing_level},
            warnings=tuple(notes),
        )
