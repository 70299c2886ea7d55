"""Downloads cut from an asset: the pixels of a box (or the whole file) as a GeoTIFF in the asset's own grid, or
as a CF NetCDF of physical values, one variable per band."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from musyq.io.catalog import as_datetime
from musyq.io.netcdf import NetcdfVariable, write_netcdf
from musyq.portal.catalog import Asset, Item
from musyq.portal.render import RequestError

FORMATS = {"tif": "image/tiff; application=geotiff", "nc": "application/x-netcdf"}
MAX_VALUES = 100_000_000  # pixels times bands of one download: a full 10980 px tile of 1 band is 121 M


def _window(source: rasterio.DatasetReader, bbox: tuple[float, float, float, float] | None) -> Window:
    whole = Window(0, 0, source.width, source.height)
    if bbox is None:
        return whole
    left, bottom, right, top = transform_bounds("EPSG:4326", source.crs, *bbox)
    exact = from_bounds(left, bottom, right, top, source.transform)
    col, row = math.floor(exact.col_off), math.floor(exact.row_off)
    inside = Window(col, row, math.ceil(exact.col_off + exact.width) - col, math.ceil(exact.row_off + exact.height) - row)
    try:
        return inside.intersection(whole)
    except rasterio.errors.WindowError:
        raise RequestError(f"the box {list(bbox)} does not meet the asset") from None


def clip(item: Item, asset: Asset, bbox: tuple[float, float, float, float] | None, fmt: str, folder: Path) -> Path:
    """The download's file in ``folder``."""
    if fmt not in FORMATS:
        raise RequestError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    with rasterio.open(asset.path) as source:
        window = _window(source, bbox)
        if window.width < 1 or window.height < 1:
            raise RequestError(f"the box {list(bbox or ())} does not meet the asset")
        count = int(window.width * window.height * source.count)
        if count > MAX_VALUES:
            raise RequestError(f"the clip holds {count:,} values; draw a smaller box (at most {MAX_VALUES:,})")
        data = source.read(window=window)
        transform = source.window_transform(window)
        profile, descriptions = source.profile, source.descriptions
        scales, offsets, nodata = source.scales, source.offsets, source.nodata
    name = f"{item.id}.{asset.key}" + ("" if bbox is None else ".clip")
    if fmt == "tif":
        path = folder / f"{name}.tif"
        profile.update(driver="GTiff", width=window.width, height=window.height, transform=transform, tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate", predictor=2 if data.dtype.kind in "ui"
                       else 3)
        with rasterio.open(path, "w", **profile) as out:
            out.write(data)
            out.scales, out.offsets = scales, offsets
            for band, text in enumerate(descriptions, 1):
                if text:
                    out.set_band_description(band, text)
        return path
    geobox = GeoBox((int(window.height), int(window.width)), transform, profile["crs"])
    coded = data.dtype.kind in "ui" and all(s == 1 for s in scales) and all(o == 0 for o in offsets)
    variables = []
    for band in range(data.shape[0]):
        label = (asset.bands[band] if band < len(asset.bands) else "") or descriptions[band] or f"band{band + 1}"
        raw: NDArray[np.generic] = data[band]
        values: NDArray[np.generic] = raw  # class codes stay integers
        if not coded:
            empty = np.zeros(raw.shape, bool) if nodata is None else np.isnan(raw) if np.isnan(nodata) \
                else raw == nodata
            values = np.where(empty, np.nan, raw * scales[band] + offsets[band]).astype(np.float32)
        variables.append(NetcdfVariable(label.replace(" ", "_"), values, f"{asset.key} {label}", None, {}))
    period = item.properties.get("start_datetime"), item.properties.get("end_datetime")
    start = as_datetime(period[0]) if period[0] else item.datetime
    end = as_datetime(period[1]) if period[1] else item.datetime
    return write_netcdf(folder / f"{name}.nc", geobox, start, end, variables,
                        {"source": item.id, "title": f"{item.id} {asset.key}"})
