"""Sentinel-2 Level-1C: SAFE folders or zips, and the per-tile layout of public cloud archives."""

from __future__ import annotations

import json
import re
import warnings
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from odc.geo.geom import Geometry, box

from musyq.core.angles import AngleGrids, AngleModel, SolarPositionAngles, fill_gaps, mean_view_direction
from musyq.core.errors import InputError
from musyq.core.scene import BandSource, ScaledReflectance, Scene
from musyq.core.sensors import get_sensor
from musyq.core.solar import earth_sun_distance

# bandId in the metadata -> band id
BAND_BY_INDEX = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
IMAGE_SUFFIX = re.compile(r"_(B\d[\dA])(_\d+m)?$")
# Processing baseline 04.00 (January 2022) added RADIO_ADD_OFFSET; older products have none.


def _strip_namespaces(root: ET.Element) -> ET.Element:
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]
    return root


def _parse_xml(data: bytes, source: str) -> ET.Element:
    try:
        return _strip_namespaces(ET.fromstring(data))
    except ET.ParseError as exc:
        raise InputError(source, f"malformed XML ({exc})") from exc


def _text(root: ET.Element, path: str, source: str) -> str:
    element = root.find(path)
    if element is None or element.text is None:
        raise InputError(source, f"metadata has no {path.split('/')[-1]}")
    return element.text.strip()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class ProductInfo:
    """What the product-level metadata (MTD_MSIL1C.xml / MTD_MSIL2A.xml) says about calibration."""

    spacecraft: str
    sensing_start: datetime
    processing_baseline: str
    product_type: str
    quantification: float
    offsets: dict[str, float]
    image_files: dict[str, str]
    nodata: int
    saturated: int
    sun_distance_factor: float | None
    solar_irradiance: dict[str, float]


def parse_product_metadata(data: bytes, source: str = "MTD_MSIL1C.xml") -> ProductInfo:
    root = _parse_xml(data, source)
    level2 = root.find(".//BOA_QUANTIFICATION_VALUE") is not None
    quant_tag, offset_tag = ("BOA_QUANTIFICATION_VALUE", "BOA_ADD_OFFSET") if level2 else (
        "QUANTIFICATION_VALUE", "RADIO_ADD_OFFSET")
    offsets = {BAND_BY_INDEX[int(e.get("band_id", "0"))]: float(e.text or 0) for e in root.iter(offset_tag)}
    images: dict[str, str] = {}
    for element in root.iter("IMAGE_FILE"):
        name = (element.text or "").strip()
        match = IMAGE_SUFFIX.search(name)
        if match and (match.group(1) not in images or match.group(2) is None):
            images.setdefault(match.group(1), name)
    special = {(e.findtext("SPECIAL_VALUE_TEXT") or ""): int(e.findtext("SPECIAL_VALUE_INDEX") or 0)
               for e in root.iter("Special_Values")}
    factor = root.find(".//Reflectance_Conversion/U")
    irradiance = {BAND_BY_INDEX[int(e.get("bandId", "0"))]: float(e.text or 0) for e in root.iter("SOLAR_IRRADIANCE")}
    return ProductInfo(
        spacecraft=_text(root, ".//SPACECRAFT_NAME", source),
        sensing_start=_time(_text(root, ".//PRODUCT_START_TIME", source)),
        processing_baseline=_text(root, ".//PROCESSING_BASELINE", source),
        product_type=_text(root, ".//PRODUCT_TYPE", source),
        quantification=float(_text(root, f".//{quant_tag}", source)),
        offsets={b: offsets.get(b, 0.0) for b in BAND_BY_INDEX},
        image_files=images,
        nodata=special.get("NODATA", 0),
        saturated=special.get("SATURATED", 65535),
        sun_distance_factor=float(factor.text) if factor is not None and factor.text else None,
        solar_irradiance=irradiance,
    )


@dataclass(frozen=True, eq=False)
class TileInfo:
    """What the granule metadata (MTD_TL.xml) says about the tile grid and the angles."""

    tile_id: str
    epsg: int
    sensing_time: datetime
    upper_left: dict[int, tuple[float, float]]
    shape: dict[int, tuple[int, int]]
    angles: AngleGrids
    mean_sun_zenith: float
    mean_sun_azimuth: float


def _values_grid(element: ET.Element | None, source: str) -> tuple[NDArray[np.float64], float]:
    if element is None:
        raise InputError(source, "angle grid missing")
    rows = [[float(v) for v in (row.text or "").split()] for row in element.iter("VALUES")]
    step = float(element.findtext("COL_STEP") or 5000)
    return np.array(rows, dtype=float), step


def parse_tile_metadata(data: bytes, source: str = "MTD_TL.xml") -> TileInfo:
    root = _parse_xml(data, source)
    tile_name = _text(root, ".//TILE_ID", source)
    match = re.search(r"_T(\d{2}[A-Z]{3})_", tile_name)
    if match is None:
        raise InputError(source, f"cannot find the tile id in {tile_name!r}")
    epsg = int(_text(root, ".//HORIZONTAL_CS_CODE", source).split(":")[1])
    upper_left = {
        int(g.get("resolution", "0")): (float(g.findtext("ULX") or 0), float(g.findtext("ULY") or 0))
        for g in root.iter("Geoposition")
    }
    shape = {int(s.get("resolution", "0")): (int(s.findtext("NROWS") or 0), int(s.findtext("NCOLS") or 0))
             for s in root.iter("Size")}
    sun = root.find(".//Sun_Angles_Grid")
    if sun is None:
        raise InputError(source, "metadata has no Sun_Angles_Grid")
    sun_zenith, step = _values_grid(sun.find("Zenith"), source)
    sun_azimuth, _ = _values_grid(sun.find("Azimuth"), source)
    zeniths, azimuths = [], []
    for grid in root.iter("Viewing_Incidence_Angles_Grids"):
        zeniths.append(_values_grid(grid.find("Zenith"), source)[0])
        azimuths.append(_values_grid(grid.find("Azimuth"), source)[0])
    if not zeniths:
        raise InputError(source, "metadata has no Viewing_Incidence_Angles_Grids")
    view_zenith, view_azimuth = mean_view_direction(zeniths, azimuths)
    origin = upper_left[min(upper_left)]
    return TileInfo(
        tile_id=match.group(1),
        epsg=epsg,
        sensing_time=_time(_text(root, ".//SENSING_TIME", source)),
        upper_left=upper_left,
        shape=shape,
        angles=AngleGrids(
            crs=f"EPSG:{epsg}", origin_x=origin[0], origin_y=origin[1], step=step,
            sun_zenith=fill_gaps(sun_zenith), sun_azimuth=fill_gaps(sun_azimuth),
            view_zenith=view_zenith, view_azimuth=view_azimuth,
        ),
        mean_sun_zenith=float(_text(root, ".//Mean_Sun_Angle/ZENITH_ANGLE", source)),
        mean_sun_azimuth=float(_text(root, ".//Mean_Sun_Angle/AZIMUTH_ANGLE", source)),
    )


class _ProductFiles:
    """Uniform access to the files of a SAFE folder or a SAFE zip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise InputError(path, "not a valid zip archive (truncated download?)") from exc
            self.names = self.zip.namelist()
        else:
            self.names = [str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()]

    def find(self, pattern: str) -> str | None:
        regex = re.compile(pattern)
        matches = sorted(n for n in self.names if regex.search(n))
        return matches[0] if matches else None

    def read(self, name: str) -> bytes:
        if self.zip is not None:
            return self.zip.read(name)
        return (self.path / name).read_bytes()

    def raster_path(self, name: str) -> str:
        if self.zip is not None:
            return f"/vsizip/{self.path.resolve()}/{name}"
        return str(self.path / name)


def _band_file(files: _ProductFiles, image_files: dict[str, str], band: str) -> str | None:
    relative = image_files.get(band)
    if relative is not None:
        name = files.find(re.escape(relative) + r"\.(jp2|tif)$")
        if name:
            return name
    return files.find(rf"IMG_DATA/(R\d+m/)?[^/]*_{band}(_\d+m)?\.(jp2|tif)$")


class Sentinel2SafeReader:
    """Sentinel-2 L1C in the ESA SAFE format, as a folder or a zip."""

    name = "sentinel2-safe"

    def can_read(self, path: Path) -> bool:
        if path.is_dir():
            return (path / "MTD_MSIL1C.xml").exists() or path.name.endswith(".SAFE")
        return path.suffix.lower() == ".zip" and "MSIL1C" in path.name.upper()

    def open(self, path: Path) -> Scene:
        files = _ProductFiles(path)
        product_xml = files.find(r"(^|/)MTD_MSIL1C\.xml$")
        tile_xml = files.find(r"GRANULE/[^/]+/MTD_TL\.xml$")
        if product_xml is None:
            raise InputError(path, "no MTD_MSIL1C.xml: not a Sentinel-2 L1C product (or an incomplete one)")
        if tile_xml is None:
            raise InputError(path, "no GRANULE/*/MTD_TL.xml: the granule metadata is missing")
        product = parse_product_metadata(files.read(product_xml), f"{path}/{product_xml}")
        tile = parse_tile_metadata(files.read(tile_xml), f"{path}/{tile_xml}")
        sensor = get_sensor(product.spacecraft.replace("Sentinel-", "S"))
        sources, missing = [], []
        for band in sensor.bands:
            name = _band_file(files, product.image_files, band.id)
            if name is None:
                missing.append(band.id)
                continue
            sources.append(BandSource(
                band=band, path=files.raster_path(name), nodata=product.nodata,
                calibration=ScaledReflectance(product.quantification, product.offsets[band.id]),
                saturated=float(product.saturated),
            ))
        if not sources:
            raise InputError(path, "the product holds no band image files")
        notes = [f"bands absent from the product: {', '.join(missing)}"] if missing else []
        for note in notes:
            warnings.warn(f"{path}: {note}", stacklevel=2)
        ulx, uly = tile.upper_left[10] if 10 in tile.upper_left else next(iter(tile.upper_left.values()))
        rows, cols = tile.shape[10] if 10 in tile.shape else (10980, 10980)
        distance = (1 / np.sqrt(product.sun_distance_factor) if product.sun_distance_factor
                    else float(earth_sun_distance(tile.sensing_time.timetuple().tm_yday)))
        return Scene(
            product_id=path.name.removesuffix(".zip").removesuffix(".SAFE"),
            product_path=str(path),
            reader=self.name,
            sensor=sensor,
            acquired=tile.sensing_time,
            crs=f"EPSG:{tile.epsg}",
            footprint=box(ulx, uly - rows * 10, ulx + cols * 10, uly, f"EPSG:{tile.epsg}"),
            bands=tuple(sources),
            angles=tile.angles,
            earth_sun_distance=float(distance),
            metadata={
                "tile": tile.tile_id,
                "processing_baseline": product.processing_baseline,
                "quantification": product.quantification,
                "radio_add_offset": product.offsets["B02"],
                "mean_sun_zenith": tile.mean_sun_zenith,
                "mean_sun_azimuth": tile.mean_sun_azimuth,
            },
            warnings=tuple(notes),
        )


class Sentinel2TileReader:
    """The per-tile layout of the public cloud archives: ``tileInfo.json`` beside ``B01.jp2`` ... ``B12.jp2``.

    Angle grids come from ``metadata.xml`` when present; otherwise sun angles are computed from the
    sensing time and the view is taken as nadir.
    """

    name = "sentinel2-tile"

    def can_read(self, path: Path) -> bool:
        return path.is_dir() and (path / "tileInfo.json").exists()

    def open(self, path: Path) -> Scene:
        info_path = path / "tileInfo.json"
        try:
            info = json.loads(info_path.read_text())
            acquired = _time(info["timestamp"])
            epsg = int(str(info["tileGeometry"]["crs"]["properties"]["name"]).rsplit(":", 1)[1])
            tile_id = f"{int(info['utmZone']):02d}{info['latitudeBand']}{info['gridSquare']}"
            product_name = str(info.get("productName") or info["datastrip"]["id"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(info_path, f"unreadable tile description ({exc!r})") from exc
        spacecraft = "S2B" if "S2B" in product_name else "S2C" if "S2C" in product_name else "S2A"
        sensor = get_sensor(spacecraft)
        # Processing baseline 04.00 added an offset of -1000; the archive's products since 25 Jan 2022 carry it.
        offset = -1000.0 if acquired >= datetime(2022, 1, 25) else 0.0
        notes = []
        angles: AngleModel
        if (path / "metadata.xml").exists():
            tile = parse_tile_metadata((path / "metadata.xml").read_bytes(), str(path / "metadata.xml"))
            angles = tile.angles
        else:
            angles = SolarPositionAngles(acquired)
            notes.append("no metadata.xml: sun angles computed from the sensing time, view assumed nadir")
        sources, missing = [], []
        for band in sensor.bands:
            file = next((path / f"{band.id}{ext}" for ext in (".jp2", ".tif") if (path / f"{band.id}{ext}").exists()),
                        None)
            if file is None:
                missing.append(band.id)
                continue
            sources.append(BandSource(band=band, path=str(file), calibration=ScaledReflectance(10000.0, offset)))
        if not sources:
            raise InputError(path, "no band files (B01.jp2 ... B12.jp2) beside tileInfo.json")
        if missing:
            notes.append(f"bands absent from the product: {', '.join(missing)}")
        for note in notes:
            warnings.warn(f"{path}: {note}", stacklevel=2)
        coords = info["tileGeometry"]["coordinates"][0]
        xs, ys = [c[0] for c in coords], [c[1] for c in coords]
        return Scene(
            product_id=product_name,
            product_path=str(path),
            reader=self.name,
            sensor=sensor,
            acquired=acquired,
            crs=f"EPSG:{epsg}",
            footprint=Geometry(info.get("tileDataGeometry") or info["tileGeometry"], crs=f"EPSG:{epsg}")
            if "tileDataGeometry" in info else box(min(xs), min(ys), max(xs), max(ys), f"EPSG:{epsg}"),
            bands=tuple(sources),
            angles=angles,
            earth_sun_distance=float(earth_sun_distance(acquired.timetuple().tm_yday)),
            metadata={"tile": tile_id, "radio_add_offset": offset},
            warnings=tuple(notes),
        )
