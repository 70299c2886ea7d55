"""STAC metadata for ARD tiles: one Item per tile and date, gathered in one Collection per output folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pystac
from odc.geo.geobox import GeoBox
from pystac.extensions.eo import Band as EOBand
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from pystac.extensions.view import ViewExtension

from musyq import __version__
from musyq.core.sensors import Band, Sensor

COLLECTION_ID = "musyq-ard"
COLLECTION_FILE = "collection.json"


@dataclass(frozen=True)
class AssetSpec:
    """One written layer as the Item should describe it."""

    key: str
    href: Path
    title: str
    roles: tuple[str, ...]
    bands: tuple[Band, ...] | None
    band_names: tuple[str, ...]
    nodata: float
    scale: float
    data_type: str  # numpy dtype name of the stored values
    unit: str | None = None


# The eo extension's closed list of common names; musyq's finer names map onto it.
EO_COMMON_NAMES = {"coastal", "blue", "green", "red", "rededge", "yellow", "pan", "nir", "nir08", "nir09", "cirrus",
                   "swir16", "swir22", "lwir", "lwir11", "lwir12"}
EO_ALIASES = {"rededge1": "rededge", "rededge2": "rededge", "rededge3": "rededge", "wv": "nir09",
              "lwir-high-gain": "lwir"}


def eo_common_name(name: str) -> str | None:
    """The eo common name of a musyq band name, or None where the eo list has none."""
    name = EO_ALIASES.get(name, name)
    return name if name in EO_COMMON_NAMES else None


def _eo_band(band: Band) -> EOBand:
    return EOBand.create(name=band.common_name, common_name=eo_common_name(band.common_name),
                         description=band.id, center_wavelength=band.center_wavelength,
                         full_width_half_max=band.full_width_half_max)


def _add_projection(item: pystac.Item, geobox: GeoBox) -> None:
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    projection.code = str(geobox.crs)
    projection.shape = list(geobox.shape.yx)
    projection.transform = list(geobox.affine)[:6]
    projection.bbox = list(geobox.boundingbox)


def _add_assets(item: pystac.Item, assets: list[AssetSpec], geobox: GeoBox) -> None:
    """The COG assets with their eo bands (where spectral) and raster bands (nodata, scale, type)."""
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    for spec in assets:
        asset = pystac.Asset(href=str(spec.href), media_type=pystac.MediaType.COG, title=spec.title,
                             roles=list(spec.roles))
        item.add_asset(spec.key, asset)
        if spec.bands is not None:
            EOExtension.ext(asset).bands = [_eo_band(b) for b in spec.bands]
        RasterExtension.ext(asset).bands = [
            RasterBand.create(nodata=spec.nodata, data_type=DataType(spec.data_type), scale=spec.scale, offset=0.0,
                              unit=spec.unit, spatial_resolution=float(abs(geobox.resolution.x)))
            for _ in spec.band_names
        ]


def build_item(
    item_id: str, sensor: Sensor, acquired: datetime, tile: str, geobox: GeoBox, assets: list[AssetSpec],
    sun_azimuth: float, sun_zenith: float, view_zenith: float, view_azimuth: float,
    fill_percent: float, properties: dict[str, object],
) -> pystac.Item:
    """An Item whose assets carry eo, raster and projection metadata, so odc-stac can load them."""
    footprint = geobox.extent.to_crs("EPSG:4326")
    when = acquired.replace(tzinfo=timezone.utc)
    item = pystac.Item(
        id=item_id, geometry=footprint.json, bbox=list(footprint.boundingbox), datetime=when,
        properties={
            "platform": sensor.platform, "instruments": [sensor.instrument], "constellation": sensor.constellation,
            "gsd": float(abs(geobox.resolution.x)), "mgrs:tile": tile, "musyq:version": __version__,
            "musyq:fill_percent": round(fill_percent, 2), **properties,
        },
    )
    _add_projection(item, geobox)
    view = ViewExtension.ext(item, add_if_missing=True)
    view.sun_azimuth = round(sun_azimuth, 3)
    view.sun_elevation = round(90.0 - sun_zenith, 3)
    view.incidence_angle = round(view_zenith, 3)
    view.azimuth = round(view_azimuth, 3)
    _add_assets(item, assets, geobox)
    return item


def empty_collection(collection_id: str = COLLECTION_ID,
                     description: str = "musyq analysis-ready data on the Sentinel-2 MGRS tile grid") -> pystac.Collection:
    return pystac.Collection(
        id=collection_id,
        description=description,
        extent=pystac.Extent(pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
                             pystac.TemporalExtent([[None, None]])),  # type: ignore[arg-type]
        license="various",
        title="musyq ARD",
    )


def update_collection(out_dir: Path, item_files: list[Path], collection_id: str = COLLECTION_ID,
                      description: str | None = None) -> Path:
    """Add the item files to the output folder's Collection (created on first use) and save it."""
    collection_path = out_dir.resolve() / COLLECTION_FILE
    items: dict[Path, None] = {}  # ordered set of item files
    if collection_path.exists():
        old = pystac.Collection.from_file(str(collection_path))
        for link in old.get_item_links():
            target = (collection_path.parent / link.href).resolve()
            if target.exists():
                items[target] = None
    for path in item_files:
        items[path.resolve()] = None
    collection = empty_collection(collection_id, description) if description else empty_collection(collection_id)
    loaded = [pystac.Item.from_file(str(p)) for p in items]
    for item in loaded:
        collection.add_item(item)
    if loaded:
        collection.extent = pystac.Extent.from_items(loaded)
    collection.set_self_href(str(collection_path))
    for item, item_path in zip(loaded, items, strict=True):
        item.set_self_href(str(item_path))
    collection.make_all_asset_hrefs_relative()
    collection.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return collection_path


def mean_angle(values: np.ndarray, scale: float = 1.0) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean() * scale) if finite.size else float("nan")


def build_period_item(
    item_id: str, start: datetime, end: datetime, tile: str, geobox: GeoBox, assets: list[AssetSpec],
    properties: dict[str, object],
) -> pystac.Item:
    """An Item for a product of a period (a composite, a reconstructed month) from several sensors."""
    footprint = geobox.extent.to_crs("EPSG:4326")
    item = pystac.Item(
        id=item_id, geometry=footprint.json, bbox=list(footprint.boundingbox), datetime=None,
        start_datetime=start.replace(tzinfo=timezone.utc), end_datetime=end.replace(tzinfo=timezone.utc),
        properties={"gsd": float(abs(geobox.resolution.x)), "mgrs:tile": tile, "musyq:version": __version__,
                    **properties},
    )
    _add_projection(item, geobox)
    _add_assets(item, assets, geobox)
    return item


def build_product_item(item_id: str, source: pystac.Item, geobox: GeoBox, assets: list[AssetSpec],
                       properties: dict[str, object]) -> pystac.Item:
    """An Item for a product made from ``source``: the same time (instant or period), place and tile."""
    kept = {k: v for k, v in source.properties.items()
            if k in ("datetime", "start_datetime", "end_datetime", "platform", "instruments", "constellation",
                     "mgrs:tile")}
    footprint = geobox.extent.to_crs("EPSG:4326")
    item = pystac.Item(id=item_id, geometry=footprint.json, bbox=list(footprint.boundingbox), datetime=source.datetime,
                       properties={**kept, "gsd": float(abs(geobox.resolution.x)), "musyq:version": __version__,
                                   **properties})
    _add_projection(item, geobox)
    _add_assets(item, assets, geobox)
    return item


def save_item(item: pystac.Item, item_path: Path) -> Path:
    """Write ``item`` at ``item_path`` with asset links relative to it, through a temporary name."""
    item.set_self_href(str(item_path))
    item.make_asset_hrefs_relative()
    partial = item_path.with_name(f".{item_path.name}.partial")
    partial.write_text(json.dumps(item.to_dict(include_self_link=False), indent=1))
    partial.replace(item_path)
    return item_path
