"""Level-1 scenes listed in STAC: a static catalog, collection, item collection or item, as a file or an http(s)
URL, or a STAC API's search (its pages followed), and the fetching of a listed scene's files into a folder its reader can open.

Items are read as plain JSON, not as pystac objects: planning needs only an item's id, time, footprint,
platform and asset links, and building the objects costs about 1.5 ms an item (15 s of a 10,000-item catalog,
against under 1 s for the JSON)."""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.geometry

from musyq.core.errors import InputError, MusyqError, SensorError
from musyq.core.sensors import resolve_sensor_id
from musyq.io.catalog import as_datetime

TIMEOUT_S = 60
PAGE_SIZE = 100  # items a page asked of a STAC API
FETCHERS = 8  # concurrent requests when a catalog's items are read over http
S2_TILE = re.compile(r"_T(\d{2}[C-X][A-Z]{2})(?:_|$)")
SKIPPED_ROLES = {"thumbnail", "overview", "visual"}  # previews that no reader needs


@dataclass(frozen=True)
class ListedScene:
    """A Level-1 scene as a STAC item describes it."""

    id: str
    sensor: str  # musyq sensor id
    acquired: datetime
    footprint: shapely.Geometry  # lon/lat
    files: dict[str, str]  # file name -> absolute href of the product's data and metadata files
    tile: str | None = None  # the MGRS tile a Sentinel-2 product is cut on


def is_stac(source: str) -> bool:
    """Whether an input names a STAC document rather than a folder of products."""
    return source.startswith(("http://", "https://", "file://")) or source.lower().endswith(".json")


def _is_url(href: str) -> bool:
    return href.startswith(("http://", "https://"))


def _local(href: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlparse(href).path)) if href.startswith("file://") else Path(href)


def _read(href: str) -> dict[str, Any]:
    try:
        if _is_url(href):
            with urllib.request.urlopen(href, timeout=TIMEOUT_S) as response:
                document = json.loads(response.read())
        else:
            document = json.loads(_local(href).read_bytes())
    except OSError as exc:
        raise InputError(href, f"cannot read the STAC document: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InputError(href, f"the STAC document is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InputError(href, "not a STAC document (not a JSON object)")
    return document


def _absolute(href: str, base: str) -> str:
    if href.startswith(("http://", "https://", "file://")):
        return href
    if _is_url(base):
        return urllib.parse.urljoin(base, href)
    if os.path.isabs(href):
        return href
    return os.path.normpath(os.path.join(os.path.dirname(_local(base)), href))


def _items(href: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every item under a STAC document, with the href it was read from (relative links resolve against it)."""
    document = _read(href)
    kind = document.get("type")
    if kind == "Feature":
        yield document, href
    elif kind == "FeatureCollection":
        for feature in document.get("features", []):
            yield feature, href
        following = [link for link in document.get("links", []) if link.get("rel") == "next"]
        if following:
            yield from _items(_absolute(following[0]["href"], href))
    elif kind in ("Catalog", "Collection"):
        links = document.get("links", [])
        items = [_absolute(link["href"], href) for link in links if link.get("rel") == "item"]
        if items and _is_url(items[0]):
            with ThreadPoolExecutor(FETCHERS) as pool:
                for item_href, item in zip(items, pool.map(_read, items), strict=True):
                    yield item, item_href
        else:
            for item_href in items:
                yield _read(item_href), item_href
        for link in links:
            if link.get("rel") == "child":
                yield from _items(_absolute(link["href"], href))
    else:
        raise InputError(href, f"not a STAC catalog, collection, item collection or item (type {kind!r})")


def _sensor(properties: dict[str, Any]) -> str:
    platform = str(properties.get("platform", "")).strip()
    if not platform:
        raise MusyqError("the item names no platform")
    try:
        return resolve_sensor_id(platform)
    except SensorError:
        raise MusyqError(f"platform {platform!r} is not a sensor musyq reads") from None


def _files(item: dict[str, Any], base: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for key, asset in item.get("assets", {}).items():
        if key in SKIPPED_ROLES or SKIPPED_ROLES.intersection(asset.get("roles", ())):
            continue
        href = _absolute(asset["href"], base)
        name = href.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if not name or name in files:
            raise MusyqError(f"asset {key!r} has no file name of its own ({href})")
        files[name] = href
    if not files:
        raise MusyqError("the item has no data assets")
    return files


def _geometry(geojson: dict[str, Any]) -> shapely.Geometry:
    if geojson.get("type") == "Polygon" and len(geojson["coordinates"]) == 1:  # the common case, built at once
        return shapely.polygons(np.asarray(geojson["coordinates"][0], dtype=float)[:, :2])
    return shapely.geometry.shape(geojson)


def mgrs_tile(item_id: str, properties: dict[str, Any] | None = None) -> str | None:
    """The tile a Sentinel-2 product is cut on: from the MGRS extension, the property names of other catalogs,
    or the product id (``..._T31UFS_...``)."""
    properties = properties or {}
    if "mgrs:utm_zone" in properties:
        return (f"{int(properties['mgrs:utm_zone']):02d}{properties.get('mgrs:latitude_band', '')}"
                f"{properties.get('mgrs:grid_square', '')}")
    for name in ("s2:mgrs_tile", "tileId", "tile_id"):
        if name in properties:
            return str(properties[name]).removeprefix("T")
    found = S2_TILE.search(item_id)
    return found.group(1) if found else None


def _searched(source: str, area: shapely.Geometry, start: datetime, end: datetime) -> str:
    """A STAC API's item search or a collection's items endpoint (an http(s) URL ending in ``/search`` or
    ``/items``) asked for the area's box and the period, unless the URL names its own."""
    parts = urllib.parse.urlsplit(source)
    if not _is_url(source) or not parts.path.rstrip("/").endswith(("/search", "/items")):
        return source
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.setdefault("bbox", ",".join(f"{v:.6f}" for v in area.bounds))
    query.setdefault("datetime", f"{start.isoformat().replace('+00:00', 'Z')}/"
                                 f"{end.isoformat().replace('+00:00', 'Z')}")
    query.setdefault("limit", str(PAGE_SIZE))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def list_scenes(source: str, area: shapely.Geometry, start: datetime, end: datetime,
                sensors: set[str] | None) -> tuple[list[ListedScene], dict[str, str]]:
    """The items under ``source`` acquired from ``start`` to ``end`` whose footprint meets ``area`` (lon/lat),
    and the items left out for a reason (an unknown platform, no assets), by id."""
    scenes, skipped = [], {}
    shapely.prepare(area)
    for item, href in _items(_searched(source, area, start, end)):
        item_id = str(item.get("id", href))
        properties = item.get("properties", {})
        stamp = properties.get("datetime") or properties.get("start_datetime")
        if not stamp or not item.get("geometry"):
            skipped[item_id] = "the item has no datetime or no geometry"
            continue
        acquired = as_datetime(stamp)
        if not start <= acquired <= end:
            continue
        footprint = _geometry(item["geometry"])
        if not area.intersects(footprint):
            continue
        try:
            sensor = _sensor(properties)
            if sensors and sensor not in sensors:
                continue
            scenes.append(ListedScene(item_id, sensor, acquired, footprint, _files(item, href),
                                      mgrs_tile(item_id, properties) if sensor.startswith("S2") else None))
        except MusyqError as exc:
            skipped[item_id] = str(exc)
    return scenes, skipped


def local_folder(files: dict[str, str]) -> Path | None:
    """The folder holding every file of a scene, when they are local files in one folder already."""
    if any(_is_url(h) for h in files.values()):
        return None
    folders = {_local(h).parent for h in files.values()}
    return folders.pop() if len(folders) == 1 else None


def fetch_scene(files: dict[str, str], folder: Path) -> Path:
    """Gather a scene's files in ``folder``: downloaded, or linked when local; each through a temporary name,
    so that an interrupted fetch resumes and never leaves a partial file under a real name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, href in files.items():
        target = folder / name
        if target.exists():
            continue
        partial = folder / f".{name}.part"
        try:
            if _is_url(href):
                with urllib.request.urlopen(href, timeout=TIMEOUT_S) as response, partial.open("wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
            else:
                source = _local(href)
                if not source.is_file():
                    raise InputError(source, "no such file")
                partial.unlink(missing_ok=True)
                partial.symlink_to(source.resolve())
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise InputError(href, f"cannot fetch {name}: {exc}") from None
        partial.rename(target)
    return folder
