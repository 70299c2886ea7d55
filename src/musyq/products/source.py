"""What a product is made from: one STAC item of musyq's catalogs (an ARD acquisition, a composite or an ARD+
month) read as reflectance by harmonized band name, its uncertainty where the item carries one, the pixels to
compute on and the sun/view geometry the reflectance stands in."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pystac
import rasterio
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox

from musyq.ard.brdf import nbar_sun_zenith
from musyq.core.errors import InputError, MusyqError
from musyq.io.catalog import as_datetime, item_sensor
from musyq.io.output import ANGLE_NODATA, ANGLE_SCALE, CLEAR, REFLECTANCE_SCALE, WATER
from musyq.io.stac import COLLECTION_FILE
from musyq.timeseries.cube import band_indices, tile_geobox

KINDS = ("ard", "composite", "ardp")
# the band set the reflectance of composites and ARD+ months is described in (the bandpass reference)
PERIOD_REFERENCE = "L8_OLI"


@dataclass(frozen=True, eq=False)
class Source:
    item: pystac.Item
    kind: str  # one of KINDS
    geobox: GeoBox
    bands: dict[str, NDArray[np.float32]]  # reflectance by harmonized name, NaN where not usable
    sigma: dict[str, NDArray[np.float32]] | None  # one sigma per band, where the item carries it
    usable: NDArray[np.bool_]  # pixels products are made on: clear land and water
    land: NDArray[np.bool_]  # clear land: vegetation products and FVC end-members
    view_zenith: NDArray[np.float32] | float  # degrees, the geometry the reflectance stands in
    sun_zenith: NDArray[np.float32] | float
    relative_azimuth: NDArray[np.float32] | float
    reference_sensor: str  # whose band definitions the reflectance follows (for band-specific coefficients)

    @property
    def tile(self) -> str:
        return str(self.item.properties.get("mgrs:tile", "tile"))

    @property
    def start(self) -> datetime:
        return _bound(self.item, "start_datetime")

    @property
    def end(self) -> datetime:
        return _bound(self.item, "end_datetime")


def _bound(item: pystac.Item, key: str) -> datetime:
    if item.datetime is not None:
        return item.datetime
    return as_datetime(str(item.properties[key]))


def item_kind(item: pystac.Item) -> str:
    if "MASK" in item.assets:
        return "ard"
    if "FLAG" in item.assets:
        return "ardp"
    if "COUNT" in item.assets:
        return "composite"
    raise MusyqError(f"item {item.id} is neither ARD, a composite nor an ARD+ month (no MASK, COUNT or FLAG asset)")


def _read(item: pystac.Item, key: str) -> NDArray[np.uint16]:
    href = item.assets[key].get_absolute_href() or item.assets[key].href
    try:
        with rasterio.open(href) as dataset:
            return np.asarray(dataset.read())
    except rasterio.RasterioIOError as exc:
        raise InputError(href, f"cannot read the {key} layer of {item.id}: {exc}") from None


def _reflectance(item: pystac.Item, key: str, wanted: Sequence[str]) -> dict[str, NDArray[np.float32]]:
    indices = band_indices(item, key)
    stored = _read(item, key)
    out = {}
    for name in wanted:
        if name in indices:
            values = stored[indices[name] - 1]
            out[name] = np.where(values > 0, values.astype(np.float32) / np.float32(REFLECTANCE_SCALE), np.nan
                                 ).astype(np.float32)
    return out


def named_reflectance(item: pystac.Item, names: Sequence[str], key: str = "SR") -> dict[str, NDArray[np.float32]]:
    """Bands of an asset by the names its item gives them (``nir`` is Sentinel-2's B8 here, not the harmonized
    narrow band), NaN where empty: what a user's band math names."""
    given = [b["name"] for b in item.assets[key].extra_fields.get("eo:bands", [])]
    missing = [n for n in names if n not in given]
    if missing:
        raise MusyqError(f"item {item.id} has no {key} band {', '.join(missing)}")
    stored = _read(item, key)
    return {n: np.where(stored[given.index(n)] > 0, stored[given.index(n)].astype(np.float32)
                        / np.float32(REFLECTANCE_SCALE), np.nan).astype(np.float32) for n in names}


def read_source(item: pystac.Item, wanted: Sequence[str]) -> Source:
    """The ``wanted`` bands of ``item`` (those it has) with their uncertainty, mask and geometry."""
    kind = item_kind(item)
    geobox = tile_geobox(item, None)
    bands = _reflectance(item, "SR", wanted)
    sigma_key = {"ard": "SRUNC", "ardp": "SIGMA", "composite": "SIGMA"}[kind]
    sigma = _reflectance(item, sigma_key, wanted) if sigma_key in item.assets else None
    stacked = np.stack(list(bands.values())) if bands else np.zeros((1, *geobox.shape.yx), dtype=np.float32)
    has_data = np.isfinite(stacked).all(axis=0)
    if kind == "ard":
        quality = _read(item, "MASK")[0]
        usable = has_data & np.isin(quality, (CLEAR, WATER))
        land = has_data & (quality == CLEAR)
    else:
        # no quality layer tells water here: a negative NDVI does
        flag = _read(item, "FLAG")[0] if kind == "ardp" else None
        usable = np.asarray(has_data & (flag > 0) if flag is not None else has_data, dtype=bool)
        land = usable.copy()
        if "red" in bands and "nir" in bands:
            with np.errstate(invalid="ignore", divide="ignore"):
                land &= (bands["nir"] - bands["red"]) > 0
    for values in bands.values():
        values[~usable] = np.nan
    view, sun, azimuth = _geometry(item, kind, geobox)
    reference = str(item.properties.get("musyq:bandpass_to") or item_sensor(item)) if kind == "ard" \
        else PERIOD_REFERENCE
    return Source(item, kind, geobox, bands, sigma, usable, land, view, sun, azimuth, reference)


def _geometry(item: pystac.Item, kind: str, geobox: GeoBox) -> tuple[NDArray[np.float32] | float, ...]:
    """Nadir view and HLS's standard sun where the reflectance is NBAR; the observed angles otherwise."""
    nbar_zenith = item.properties.get("musyq:nbar_solar_zenith")
    if kind == "ard" and nbar_zenith is None:
        angles = _read(item, "ANG").astype(np.float32)
        angles[angles == ANGLE_NODATA] = np.nan
        angles /= np.float32(ANGLE_SCALE)
        return angles[3], angles[1], angles[0] - angles[2]
    if nbar_zenith is None:
        # a period product: the NBAR sun of its middle day at the tile centre
        start, end = _bound(item, "start_datetime"), _bound(item, "end_datetime")
        middle = start + (end - start) / 2
        lon, lat = geobox.extent.centroid.to_crs("EPSG:4326").coords[0]
        nbar_zenith = nbar_sun_zenith(lat, lon, middle.astimezone(timezone.utc).replace(tzinfo=None), 45.0)
    return 0.0, float(nbar_zenith), 0.0


def _items_of(path: Path) -> list[pystac.Item]:
    try:
        if path.is_dir() or path.name == COLLECTION_FILE:
            collection_path = path / COLLECTION_FILE if path.is_dir() else path
            if not collection_path.exists():
                raise InputError(path, f"holds no {COLLECTION_FILE} (not a musyq output folder)")
            return list(pystac.Collection.from_file(str(collection_path)).get_items(recursive=True))
        return [pystac.Item.from_file(str(path))]
    except InputError:
        raise
    except Exception as exc:  # pystac raises many kinds on a broken file
        raise InputError(path, f"is neither a STAC item nor a musyq catalog ({exc})") from None


def find_sources(inputs: Sequence[Path], tile: str | None = None, start: str | None = None,
                 end: str | None = None) -> Iterator[pystac.Item]:
    """The ARD, composite and ARD+ items in ``inputs`` (item files or catalog folders), filtered by tile and by
    time (an item counts where its period touches ``start``..``end``), oldest first."""
    first = as_datetime(start) if start else None
    last = as_datetime(end, end=True) if end else None
    found: dict[str, pystac.Item] = {}
    for path in inputs:
        if not path.exists():
            raise InputError(path, "does not exist")
        for item in _items_of(path):
            try:
                item_kind(item)
            except MusyqError:
                continue  # products and other items of a shared catalog
            if tile and item.properties.get("mgrs:tile") != tile:
                continue
            if (first and _bound(item, "end_datetime") < first) or (last and _bound(item, "start_datetime") > last):
                continue
            found.setdefault(item.id, item)
    return iter(sorted(found.values(), key=lambda i: (_bound(i, "start_datetime"), i.id)))
