"""Gaofen-1 WFV1-4 and Gaofen-6 WFV Level-1A: the CRESDA archive or its folder (GeoTIFF, XML, RPB).

The image has no map georeference; its geometry is the RPC model in the ``.rpb`` beside each TIFF,
which GDAL loads itself. Every XML field is optional in real products, so each has a fallback: the
file name for satellite, camera and date, the RPC model for the footprint, the solar position for the
sun. Calibration comes from ``<AbsCeof>`` when the XML has it, else from the yearly table (shipped, or
the user's ``--calibration`` file). The layout and its traps are described in the reference notes the
tests cite; the writers here produce the same layout for simulated products.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import rasterio
from odc.geo.geom import Geometry, polygon
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer

from musyq.core.angles import RpcAngles, RpcStrip
from musyq.core.errors import InputError, UnknownProductError
from musyq.core.scene import BandSource, RadianceCalibration, Scene
from musyq.core.sensors import get_sensor, solar_irradiance
from musyq.core.solar import earth_sun_distance, solar_angles

NAME = re.compile(r"^(?P<satellite>GF\d[A-Z]?)_(?P<camera>WFV\d?)_(?P<ew>[EW])(?P<lon>\d+(?:\.\d+)?)_"
                  r"(?P<ns>[NS])(?P<lat>\d+(?:\.\d+)?)_(?P<date>\d{8})_(?P<level>L\d[A-Z])(?P<id>\d+)", re.IGNORECASE)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar")
STRIP = re.compile(r"-(\d+)$")  # GF-6 WFV images come as column strips {base}-1.tiff, {base}-2.tiff, ...
BEIJING = timedelta(hours=8)
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")
CALIBRATION_FILE = "gaofen.json"


@dataclass(frozen=True)
class GaofenMetadata:
    """What the ``<ProductMetaData>`` XML (and, where it is silent, the product name) says."""

    satellite: str
    camera: str
    product_id: str
    level: str
    acquired: datetime  # UTC
    time_note: str
    sun_zenith: float | None
    sun_azimuth: float | None
    view_zenith: float | None
    view_azimuth: float | None
    corners: tuple[tuple[float, float], ...] | None  # (lon, lat) top-left, top-right, bottom-right, bottom-left
    width: int | None
    height: int | None
    bands: tuple[int, ...] | None
    pixel_bits: int | None
    abs_coefficients: tuple[float, ...] | None
    cloud_percent: float | None
    scene_id: str | None
    orbit_id: str | None

    @property
    def sensor_id(self) -> str:
        return f"{self.satellite.upper()}_{self.camera.upper()}"


def product_base(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES + (".xml", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _text(root: ElementTree.Element, tag: str) -> str | None:
    node = root.find(tag)
    if node is None or node.text is None or not node.text.strip():
        return None
    return node.text.strip()


def _number(root: ElementTree.Element, tag: str, source: Path) -> float | None:
    text = _text(root, tag)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(source, f"<{tag}> is {text!r}, not a number") from None


def parse_time(text: str, source: Path, tag: str) -> datetime:
    for pattern in TIME_FORMATS:
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    raise InputError(source, f"<{tag}> is {text!r}, not a time like 2021-02-08 18:41:15")


def _clock_reading(local: datetime, lon: float, lat: float, sun_zenith: float | None) -> tuple[datetime, str]:
    """The UTC time of a clock reading that may be UTC or Beijing time.

    No source says which the XML uses. With a ``<SolarZenith>`` the reading whose sun matches it wins;
    without one, the reading closest to the 10:30 local solar time both satellites cross at.
    """
    readings = {"UTC": local, "Beijing time (UTC+8)": local - BEIJING}
    if sun_zenith is not None:
        misfit = {k: abs(float(solar_angles(t, np.array(lat), np.array(lon))[0]) - sun_zenith)
                  for k, t in readings.items()}
        how = "its sun zenith matches <SolarZenith>"
    else:
        misfit = {k: abs(((t.hour + t.minute / 60 + lon / 15) % 24) - 10.5) for k, t in readings.items()}
        how = "it puts the overpass nearest 10:30 local solar time"
    chosen = min(misfit, key=misfit.__getitem__)
    return readings[chosen], f"CenterTime read as {chosen}: {how}"


def parse_metadata(xml_path: Path, name_hint: str) -> GaofenMetadata:
    """Read the product XML leniently: flat ``<ProductMetaData>``, every field optional."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise InputError(xml_path, f"is not readable XML: {exc}") from None
    if root.tag != "ProductMetaData":
        raise InputError(xml_path, f"root element is <{root.tag}>, a Gaofen product has <ProductMetaData>")
    name = NAME.match(name_hint)
    satellite = _text(root, "SatelliteID") or (name.group("satellite") if name else None)
    camera = _text(root, "SensorID") or (name.group("camera") if name else None)
    if satellite is None or camera is None:
        raise InputError(xml_path, "names no <SatelliteID>/<SensorID> and the product name is not GF*_WFV*_...")
    corners = None
    corner_tags = ("TopLeft", "TopRight", "BottomRight", "BottomLeft")
    values = [(_number(root, f"{c}Longitude", xml_path), _number(root, f"{c}Latitude", xml_path)) for c in corner_tags]
    if all(lon is not None and lat is not None for lon, lat in values):
        corners = tuple((float(lon), float(lat)) for lon, lat in values)  # type: ignore[arg-type]
    centre_lon = _number(root, "CenterLongitude", xml_path)
    centre_lat = _number(root, "CenterLatitude", xml_path)
    if centre_lon is None and corners is not None:
        centre_lon, centre_lat = (float(np.mean([c[i] for c in corners])) for i in (0, 1))
    if centre_lon is None and name is not None:
        centre_lon = float(name.group("lon")) * (-1 if name.group("ew").upper() == "W" else 1)
        centre_lat = float(name.group("lat")) * (-1 if name.group("ns").upper() == "S" else 1)
    sun_zenith = _number(root, "SolarZenith", xml_path)
    time_tag = next((t for t in ("CenterTime", "StartTime", "EndTime") if _text(root, t)), None)
    if time_tag is not None:
        clock = parse_time(str(_text(root, time_tag)), xml_path, time_tag)
        if centre_lon is not None and centre_lat is not None:
            acquired, note = _clock_reading(clock, centre_lon, centre_lat, sun_zenith)
        else:
            acquired, note = clock, f"{time_tag} read as UTC (no position to check it against)"
    elif name is not None:
        acquired = datetime.strptime(name.group("date"), "%Y%m%d") + timedelta(hours=2, minutes=30)
        note = "no time in the XML: the date from the product name at 02:30 UTC (10:30 Beijing time)"
    else:
        raise InputError(xml_path, "has no <CenterTime>, <StartTime> or <EndTime> and no dated product name")
    bands_text = _text(root, "Bands")
    abs_text = _text(root, "AbsCeof")
    try:
        bands = tuple(int(b) for b in bands_text.split(",")) if bands_text else None
        abs_coefficients = tuple(float(v) for v in re.split(r"[,\s]+", abs_text) if v) if abs_text else None
    except ValueError:
        raise InputError(xml_path, f"<Bands> {bands_text!r} or <AbsCeof> {abs_text!r} is not a list of numbers") \
            from None

    def integer(tag: str) -> int | None:
        value = _number(root, tag, xml_path)
        return None if value is None else int(value)

    product_id = _text(root, "ProductID") or (name.group("id") if name else product_base(xml_path))
    level = _text(root, "ProductLevel") or (name.group("level") if name else "LEVEL1A")
    return GaofenMetadata(
        satellite=satellite, camera=camera, product_id=product_id, level=level, acquired=acquired, time_note=note,
        sun_zenith=sun_zenith, sun_azimuth=_number(root, "SolarAzimuth", xml_path),
        view_zenith=_number(root, "SatelliteZenith", xml_path), view_azimuth=_number(root, "SatelliteAzimuth", xml_path),
        corners=corners, width=integer("WidthInPixels"), height=integer("HeightInPixels"), bands=bands,
        pixel_bits=integer("ValidPixelBits") or integer("PixelBits"), abs_coefficients=abs_coefficients,
        cloud_percent=_number(root, "CloudPercent", xml_path), scene_id=_text(root, "SceneID"),
        orbit_id=_text(root, "OrbitID"),
    )


# --- calibration -------------------------------------------------------------------------------------------

@cache
def _shipped_table() -> dict[str, dict[str, dict[str, list[float]]]]:
    text = resources.files("musyq").joinpath("data", "calibration", CALIBRATION_FILE).read_text()
    return dict(json.loads(text)["sensors"])


def read_calibration_table(path: Path | None) -> dict[str, dict[str, dict[str, list[float]]]]:
    """The shipped yearly coefficients, with a user file's sensors and years laid over them."""
    table = {sensor: dict(years) for sensor, years in _shipped_table().items()}
    if path is None:
        return table
    try:
        user = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"is not a readable JSON calibration table: {exc}") from None
    sensors = user.get("sensors") if isinstance(user, dict) else None
    if not isinstance(sensors, dict):
        raise InputError(path, 'needs {"sensors": {"GF1_WFV1": {"2021": {"gain": [...], "bias": [...]}}}}')
    for sensor, years in sensors.items():
        if not isinstance(years, dict):
            raise InputError(path, f"sensor {sensor!r} must map years to coefficients")
        table.setdefault(sensor.upper(), {}).update(years)
    return table


def coefficients_for(sensor_id: str, year: int, bands: int, table: dict[str, dict[str, dict[str, list[float]]]],
                     source: str | Path) -> tuple[list[tuple[float, float]], str]:
    """Per-band ``(gain, bias)`` of ``L = gain DN + bias`` for a camera and year, and where they came from."""
    years = table.get(sensor_id)
    if years is None:
        raise InputError(source, f"no calibration for camera {sensor_id}; known: {', '.join(sorted(table))} "
                                 "(give --calibration FILE)")
    entry = years.get(str(year))
    if entry is None:
        raise InputError(source, f"no calibration of {sensor_id} for {year}; the table has "
                                 f"{', '.join(sorted(years))} (give --calibration FILE with that year)")
    bias = list(entry.get("bias", [0.0] * bands))
    if "reciprocal_gain" in entry:  # published as L = DN / A + L0
        gains = [1.0 / float(a) for a in entry["reciprocal_gain"]]
    else:
        gains = [float(g) for g in entry.get("gain", [])]
    if len(gains) != bands or len(bias) != bands:
        raise InputError(source, f"calibration of {sensor_id} for {year} has {len(gains)} gains and {len(bias)} "
                                 f"biases for {bands} bands")
    return list(zip(gains, (float(b) for b in bias), strict=True)), f"{sensor_id} {year} table"


# --- locating the files ------------------------------------------------------------------------------------

def unpack_root() -> Path:
    """Where archives are unpacked once and kept: ``$MUSYQ_CACHE/unpacked`` (default ``~/.cache/musyq``)."""
    return Path(os.environ.get("MUSYQ_CACHE", Path.home() / ".cache" / "musyq")) / "unpacked"


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack(archive: Path) -> Path:
    """The archive's files in a folder of their own; unpacked under a temporary name, then renamed, so an
    interrupted unpack leaves nothing that looks finished, and a rerun reuses a finished one."""
    stat = archive.stat()
    target = unpack_root() / f"{product_base(archive)}-{stat.st_size}-{int(stat.st_mtime)}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        with tarfile.open(archive) as bundle:
            bundle.extractall(temporary, filter="data")  # no absolute paths, links out or device files
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        raise InputError(archive, f"is not a complete tar archive: {exc}") from None
    entries = [p for p in temporary.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():  # one nested folder: its files are the product
        for member in entries[0].iterdir():
            member.rename(temporary / member.name)
        entries[0].rmdir()
    try:
        temporary.rename(target)
    except OSError:  # another process finished the same archive first
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def _looks_gaofen(xml_path: Path) -> bool:
    try:
        with xml_path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return b"<ProductMetaData" in head and b"<SatelliteID>GF" in head.replace(b" ", b"")


def find_xml(path: Path) -> Path | None:
    """The product XML of a folder (or the XML itself, or the XML beside a TIFF)."""
    if path.is_file():
        if path.suffix.lower() == ".xml":
            return path if _looks_gaofen(path) or NAME.match(path.name) else None
        if path.suffix.lower() in (".tiff", ".tif"):
            base = STRIP.sub("", path.stem)
            candidate = path.with_name(base + ".xml")
            return candidate if candidate.is_file() else None
        return None
    if path.is_dir():
        candidates = sorted(p for p in path.glob("*.xml") if p.name.lower() != "order.xml")
        named = [p for p in candidates if NAME.match(p.name)]
        for candidate in named + [p for p in candidates if p not in named]:
            if _looks_gaofen(candidate) or (candidate in named and candidate.with_suffix(".tiff").exists()):
                return candidate
    return None


def image_files(xml_path: Path) -> list[Path]:
    """The product's TIFFs: ``{base}.tiff`` (GF-1) or the strips ``{base}-N.tiff`` (GF-6) in column order."""
    base = xml_path.stem
    folder = xml_path.parent
    single = [p for p in folder.iterdir() if p.stem == base and p.suffix.lower() in (".tiff", ".tif")]
    if single:
        return single
    strips = []
    for p in folder.iterdir():
        match = STRIP.search(p.stem)
        if match and p.stem[: match.start()] == base and p.suffix.lower() in (".tiff", ".tif"):
            strips.append((int(match.group(1)), p))
    return [p for _, p in sorted(strips)]


def _rpb_of(tiff: Path) -> Path | None:
    for suffix in (".rpb", ".RPB"):
        candidate = tiff.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


# --- the reader --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Strip:
    path: Path
    width: int
    height: int
    count: int
    rpc: RPC


def _open_strip(tiff: Path) -> Strip:
    rpb = _rpb_of(tiff)
    if rpb is None:
        raise InputError(tiff, f"has no RPC file beside it ({tiff.stem}.rpb): the image cannot be located")
    try:
        with rasterio.open(tiff) as dataset:
            rpc = dataset.rpcs
            shape = (dataset.width, dataset.height, dataset.count)
            # the last row of the last band ends the file whatever the interleave: a cut file fails here
            dataset.read(dataset.count, window=((dataset.height - 1, dataset.height), (0, dataset.width)))
    except rasterio.RasterioIOError as exc:
        raise InputError(tiff, f"is not a readable GeoTIFF: {exc}") from None
    if rpc is None:
        raise InputError(rpb, "is not an RPC00B file GDAL can read (a field is missing or malformed)")
    return Strip(tiff, shape[0], shape[1], shape[2], rpc)


def footprint_from_rpc(strips: list[Strip], samples: int = 16) -> Geometry:
    """The ground outline of the image: its edges traced through the RPC models at their mean height."""
    def trace(strip: Strip, rows: np.ndarray, cols: np.ndarray) -> list[tuple[float, float]]:
        with RPCTransformer(strip.rpc) as transformer:
            xs, ys = transformer.xy(rows.tolist(), cols.tolist(), offset="center")
        return [(float(x), float(y)) for x, y in zip(np.atleast_1d(xs), np.atleast_1d(ys), strict=True)]

    def along(first: float, last: float) -> np.ndarray:
        return np.linspace(first, last, samples)

    def fixed(value: float) -> np.ndarray:
        return np.full(samples, value)

    ring: list[tuple[float, float]] = []
    for strip in strips:  # the top edge, left to right across the strips
        ring += trace(strip, fixed(0), along(0, strip.width - 1))
    last, first = strips[-1], strips[0]
    ring += trace(last, along(0, last.height - 1), fixed(last.width - 1))
    for strip in reversed(strips):
        ring += trace(strip, fixed(strip.height - 1), along(strip.width - 1, 0))
    ring += trace(first, along(first.height - 1, 0), fixed(0))
    return polygon(ring + [ring[0]], "EPSG:4326")


def utm_crs(lon: float, lat: float) -> str:
    zone = int((lon + 180) // 6) % 60 + 1
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


class GaofenReader:
    """GF-1 WFV1-4 and GF-6 WFV Level-1A, as the CRESDA archive or its unpacked folder."""

    name = "gaofen-l1a"

    def __init__(self, calibration: Path | None = None) -> None:
        self.calibration = calibration

    def can_read(self, path: Path) -> bool:
        if is_archive(path):
            return NAME.match(path.name) is not None
        return find_xml(path) is not None

    def open(self, path: Path) -> Scene:
        folder = unpack(path) if is_archive(path) else path
        xml_path = find_xml(folder)
        if xml_path is None:
            raise UnknownProductError(path, "holds no Gaofen <ProductMetaData> XML")
        meta = parse_metadata(xml_path, xml_path.name)
        if not meta.level.upper().replace("LEVEL", "L").startswith("L1"):
            raise UnknownProductError(xml_path, f"is a {meta.level} product; musyq reads Level-1A")
        try:
            sensor = get_sensor(meta.sensor_id)
        except KeyError:
            raise InputError(xml_path, f"camera {meta.satellite} {meta.camera} is not a Gaofen WFV camera musyq "
                                       "knows (GF1 WFV1-WFV4, GF6 WFV)") from None
        tiffs = image_files(xml_path)
        if not tiffs:
            raise InputError(xml_path, f"no image {xml_path.stem}.tiff (or {xml_path.stem}-N.tiff strips) beside it")
        strips = [_open_strip(t) for t in tiffs]
        bands = sensor.reflective_bands
        if any(s.count != len(bands) for s in strips):
            raise InputError(strips[0].path, f"has {strips[0].count} bands; {sensor.id} has {len(bands)}")
        if meta.abs_coefficients is not None and len(meta.abs_coefficients) == len(bands):
            pairs, calibration_source = [(g, 0.0) for g in meta.abs_coefficients], "<AbsCeof> of the product XML"
        else:
            table = read_calibration_table(self.calibration)
            pairs, calibration_source = coefficients_for(sensor.id, meta.acquired.year, len(bands), table,
                                                         self.calibration or xml_path)
            if self.calibration is not None:
                calibration_source += f" ({self.calibration.name} over the shipped table)"
        irradiance = solar_irradiance(sensor.id)
        footprint = footprint_from_rpc(strips)
        centre = footprint.centroid.coords[0]
        offsets = np.cumsum([0] + [s.width for s in strips[:-1]])
        sources = []
        for k, band in enumerate(bands):
            gain, bias = pairs[k]
            sources.append(BandSource(band=band, path=str(strips[0].path), index=k + 1, nodata=0,
                                      calibration=RadianceCalibration(gain, bias, irradiance[band.id]),
                                      parts=tuple(str(s.path) for s in strips[1:]),
                                      saturated=None if meta.pixel_bits is None else 2.0**meta.pixel_bits - 1))
        angles = RpcAngles(meta.acquired, tuple(RpcStrip(s.rpc, s.width, s.height, int(o))
                                               for s, o in zip(strips, offsets, strict=True)))
        notes = [meta.time_note]
        if meta.pixel_bits is None:
            notes.append("no <ValidPixelBits>: DN taken as they are")
        for note in notes[1:]:
            warnings.warn(f"{path}: {note}", stacklevel=2)
        metadata: dict[str, str | float | int] = {
            "satellite": meta.satellite, "camera": meta.camera, "calibration": calibration_source,
            "time": meta.time_note, "image_width": int(sum(s.width for s in strips)), "image_height": strips[0].height,
            "strips": len(strips),
        }
        for key, value in (("sun_zenith_xml", meta.sun_zenith), ("sun_azimuth_xml", meta.sun_azimuth),
                           ("view_zenith_xml", meta.view_zenith), ("view_azimuth_xml", meta.view_azimuth),
                           ("cloud_percent_xml", meta.cloud_percent), ("pixel_bits", meta.pixel_bits),
                           ("scene_id", meta.scene_id), ("orbit_id", meta.orbit_id)):
            if value is not None:
                metadata[key] = value
        return Scene(
            product_id=product_base(xml_path), product_path=str(path), reader=self.name, sensor=sensor,
            acquired=meta.acquired, crs=utm_crs(*centre), footprint=footprint, bands=tuple(sources), angles=angles,
            earth_sun_distance=float(earth_sun_distance(meta.acquired.timetuple().tm_yday)), metadata=metadata,
            warnings=tuple(notes[1:]),
        )


# --- writing the layout (simulated products) ---------------------------------------------------------------

def format_rpb(rpc: RPC) -> str:
    """The ``.rpb`` text CRESDA ships: placeholder ids, one coefficient per line, signed upper-case E."""
    def number(value: float) -> str:
        return f"{value:+.15E}"

    lines = ['satId = "XXX";', 'bandId = "XXX";', 'SpecId = "XXX";', "BEGIN_GROUP = IMAGE",
             f"\terrBias = {max(rpc.err_bias or 0.0, 0.0):.1f};", f"\terrRand = {max(rpc.err_rand or 0.0, 0.0):.1f};"]
    for key, attribute in (("lineOffset", "line_off"), ("sampOffset", "samp_off"), ("latOffset", "lat_off"),
                           ("longOffset", "long_off"), ("heightOffset", "height_off"), ("lineScale", "line_scale"),
                           ("sampScale", "samp_scale"), ("latScale", "lat_scale"), ("longScale", "long_scale"),
                           ("heightScale", "height_scale")):
        lines.append(f"\t{key} = {number(getattr(rpc, attribute))};")
    for key, attribute in (("lineNumCoef", "line_num_coeff"), ("lineDenCoef", "line_den_coeff"),
                           ("sampNumCoef", "samp_num_coeff"), ("sampDenCoef", "samp_den_coeff")):
        values = [number(v) for v in getattr(rpc, attribute)]
        lines.append(f"\t{key} = (")
        lines += [f"\t\t\t{v}," for v in values[:-1]] + [f"\t\t\t{values[-1]});"]
    lines += ["END_GROUP = IMAGE", "END;"]
    return "\n".join(lines) + "\n"


def format_metadata(fields: dict[str, str | float | int]) -> str:
    """A flat ``<ProductMetaData>`` document in the given field order."""
    root = ElementTree.Element("ProductMetaData")
    for key, value in fields.items():
        ElementTree.SubElement(root, key).text = "" if value is None else str(value)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def archive_folder(folder: Path, archive: Path) -> Path:
    """Pack a product folder's files flat into a ``.tar.gz`` (temporary name, then rename)."""
    temporary = archive.with_name(f".{archive.name}.partial")
    with tarfile.open(temporary, "w:gz", compresslevel=1) as bundle:
        for member in sorted(folder.iterdir()):
            bundle.add(member, arcname=member.name)
    temporary.replace(archive)
    return archive

