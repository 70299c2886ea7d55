"""The area of an order: a ``W,S,E,N`` box in degrees, or the union of the features of a GeoJSON, GeoPackage or
ESRI shapefile (read with pyogrio, any CRS), in EPSG:4326."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import shapely.ops
import shapely
from odc.geo.geom import Geometry, box
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from musyq.core.errors import InputError, MusyqError

AREA_FILES = (".geojson", ".json", ".gpkg", ".shp")


def read_area(text: str) -> Geometry:
    """The area as one EPSG:4326 geometry; a clear error for an empty box, a file without a CRS or no features."""
    path = Path(text)
    if path.suffix.lower() in AREA_FILES or path.exists():
        return _from_file(path)
    parts = text.split(",")
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise MusyqError(f"area {text!r} is neither W,S,E,N in degrees nor a GeoJSON, GeoPackage or shapefile")
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise MusyqError(f"area {text!r} is an empty or impossible box: it needs west < east within -180..180 and "
                         "south < north within -90..90")
    return box(west, south, east, north, "EPSG:4326")


def _from_file(path: Path) -> Geometry:
    if not path.exists():
        raise InputError(path, "does not exist")
    try:
        meta, _, geometry, _ = pyogrio.raw.read(path, read_geometry=True)
    except Exception as exc:  # GDAL raises many kinds for a broken file
        raise InputError(path, f"is not a readable vector file ({exc})") from None
    if meta.get("crs") is None:
        raise InputError(path, "has no coordinate reference system (a shapefile needs its .prj)")
    shapes = [g for g in shapely.from_wkb(geometry) if g is not None and not g.is_empty] if geometry is not None else []
    if not shapes:
        raise InputError(path, "holds no geometry")
    union = shapely.union_all(shapes)
    try:
        source = CRS.from_user_input(meta["crs"])
    except CRSError as exc:
        raise InputError(path, f"has a coordinate reference system pyproj cannot read ({exc})") from None
    lonlat = shapely.ops.transform(Transformer.from_crs(source, "EPSG:4326", always_xy=True).transform, union) \
        if not source.equals(CRS.from_epsg(4326)) else union
    if lonlat.is_empty or lonlat.area == 0:
        raise InputError(path, "covers no area (points or lines only)")
    return Geometry(lonlat, "EPSG:4326")
