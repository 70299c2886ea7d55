"""The ARD++ cube: every ARD item of a tile and period, from all sensors, as one lazy Dataset on Dask.

odc-stac does the reading (windowed, lazy, onto one grid); this module only says which assets and bands to read,
turns the stored integers into physical values and puts the sensors side by side on one time axis.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import numpy as np
import odc.stac
import pystac
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from musyq.core.errors import MusyqError
from musyq.io.catalog import find_items, item_sensor
from musyq.io.output import ANGLE_NODATA, ANGLE_SCALE, REFLECTANCE_SCALE

# Harmonized band names of the cube and the sensor bands that give them, first found wins: Sentinel-2's
# narrow NIR (B8A, nir08) matches Landsat's OLI NIR as in HLS.
HARMONIZED = {
    "coastal": ("coastal",), "blue": ("blue",), "green": ("green",), "red": ("red",),
    "rededge1": ("rededge1",), "rededge2": ("rededge2",), "rededge3": ("rededge3",),
    "nir": ("nir08", "nir"), "swir16": ("swir16",), "swir22": ("swir22",),
}
DEFAULT_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
SPATIAL_CHUNK = 512


def band_indices(item: pystac.Item, key: str = "SR") -> dict[str, int]:
    """Harmonized name -> 1-based band of the item's reflectance asset ``key`` (SR, or its uncertainty)."""
    asset = item.assets.get(key)
    if asset is None:
        raise MusyqError(f"item {item.id} has no surface reflectance (SR) asset; make it with atmospheric correction")
    names = [b["name"] for b in asset.extra_fields.get("eo:bands", [])]
    found = {}
    for name, sources in HARMONIZED.items():
        for source in sources:
            if source in names:
                found[name] = names.index(source) + 1
                break
    return found


def tile_geobox(item: pystac.Item, resolution: float | None) -> GeoBox:
    """The tile's grid as the item stores it, or the same extent at ``resolution`` metres."""
    props = item.properties
    if "proj:transform" not in props:
        raise MusyqError(f"item {item.id} carries no projection metadata")
    transform = props["proj:transform"]
    native = abs(transform[0])
    height, width = props["proj:shape"]
    crs = props.get("proj:code") or f"EPSG:{props.get('proj:epsg')}"
    size = resolution or native
    if not size > 0:
        raise MusyqError(f"the resolution must be positive, not {resolution}")
    scale = native / size
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    return GeoBox(shape, Affine(size, 0.0, transform[2], 0.0, -size, transform[5]), crs)


def _load_sensor(items: list[pystac.Item], bands: Sequence[str], geobox: GeoBox, chunk: int,
                 with_sigma: bool) -> xr.Dataset:
    indices = band_indices(items[0])
    missing = [b for b in bands if b not in indices]
    assets = {b: f"SR.{indices[b]}" for b in bands if b in indices}
    for item in items[1:]:
        if band_indices(item) != indices:
            raise MusyqError(f"items of {item_sensor(item)} disagree on their band order ({item.id})")
    # the SR uncertainty where every item of the sensor carries it (the same band order as SR)
    sigma_assets = {b: f"SRUNC.{k}" for b, k in band_indices(items[0], "SRUNC").items() if b in assets} \
        if with_sigma and all("SRUNC" in item.assets for item in items) else {}
    layers = list(assets.values()) + list(sigma_assets.values()) + ["MASK.1", "MASK.2", "ANG.2", "ANG.4"]
    raw = odc.stac.load(items, bands=layers, geobox=geobox, groupby="solar_day", chunks={"x": chunk, "y": chunk},
                        resampling="nearest", fail_on_error=True)
    out = xr.Dataset(coords={"time": raw.time})
    for name in bands:
        if name in missing:  # a band this sensor lacks (red edge on Landsat) is all fill
            out[name] = xr.full_like(raw["MASK.1"], np.nan, dtype=np.float32)
        else:
            values = raw[assets[name]]
            out[name] = (values.astype(np.float32) / REFLECTANCE_SCALE).where(values != 0)
        out[name].attrs = {"units": "1", "long_name": f"surface reflectance, {name}"}
        if with_sigma:
            sigma_name = f"{name}_sigma"
            if name in sigma_assets:
                stored = raw[sigma_assets[name]]
                out[sigma_name] = (stored.astype(np.float32) / REFLECTANCE_SCALE).where(stored != 0)
            else:
                out[sigma_name] = xr.full_like(raw["MASK.1"], np.nan, dtype=np.float32)
            out[sigma_name].attrs = {"units": "1", "long_name": f"one sigma of the surface reflectance, {name}"}
    out["quality"] = raw["MASK.1"].astype(np.uint8)
    out["quality"].attrs = {"flag_values": "0 fill, 1 clear, 2 water, 3 cloud shadow, 4 snow, 5 cloud"}
    out["processing"] = raw["MASK.2"].astype(np.uint8)
    for name, layer in (("sun_zenith", "ANG.2"), ("view_zenith", "ANG.4")):
        angle = raw[layer]
        out[name] = (angle.astype(np.float32) / ANGLE_SCALE).where(angle != ANGLE_NODATA)
        out[name].attrs = {"units": "degree"}
    sensor = item_sensor(items[0])
    return out.assign_coords(sensor=("time", np.array([sensor] * out.sizes["time"], dtype=object)))


def open_cube(
    catalogs: Sequence[Path | str] | Path | str, tile: str, start: date | datetime | str, end: date | datetime | str,
    sensors: Sequence[str] | None = None, bands: Sequence[str] = DEFAULT_BANDS, resolution: float | None = None,
    chunk: int = SPATIAL_CHUNK, with_sigma: bool = False,
) -> xr.Dataset:
    """Every ARD item of ``tile`` from ``start`` to ``end`` as one lazy Dataset ``(time, y, x)``.

    Each requested band (harmonized names: blue, green, red, nir, swir16, swir22, coastal, rededge1-3) is a
    float reflectance variable, NaN for fill; ``quality`` holds the mask codes, ``processing`` the stages' flags,
    ``sun_zenith`` and ``view_zenith`` the angles, and the ``sensor`` coordinate who saw each date. With
    ``with_sigma`` each band also has ``<band>_sigma``, the items' SR uncertainty (NaN where an item has none). Same-day
    items of one sensor are merged; different sensors keep their own times.
    """
    unknown = [b for b in bands if b not in HARMONIZED]
    if unknown:
        raise MusyqError(f"unknown band {unknown[0]!r}; the cube has {', '.join(HARMONIZED)}")
    folders = [Path(catalogs)] if isinstance(catalogs, (str, Path)) else [Path(c) for c in catalogs]
    items = find_items(folders, tile, start, end, sensors)
    if not items:
        raise MusyqError(f"no ARD item of tile {tile} from {start} to {end} in {', '.join(map(str, folders))}")
    geobox = tile_geobox(items[0], resolution)
    by_sensor: dict[str, list[pystac.Item]] = {}
    for item in items:
        by_sensor.setdefault(item_sensor(item), []).append(item)
    parts = [_load_sensor(group, bands, geobox, chunk, with_sigma) for _, group in sorted(by_sensor.items())]
    cube = xr.concat(parts, dim="time", coords="minimal", compat="override", join="override").sortby("time")
    available = set().union(*(band_indices(group[0]) for group in by_sensor.values()))
    cube.attrs = {"mgrs_tile": tile, "resolution_m": float(abs(geobox.resolution.x)), "crs": str(geobox.crs),
                  "absent_bands": [b for b in bands if b not in available]}  # no sensor of the cube has them
    return cube


def write_zarr(cube: xr.Dataset, out: Path, overwrite: bool = False) -> Path:
    """Write the cube as Zarr chunked whole in time and in spatial blocks (one pixel's series is one read),
    through a temporary name; an existing store is kept unless ``overwrite``."""
    if out.exists() and not overwrite:
        return out
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    spatial = {d: min(cube.sizes[d], SPATIAL_CHUNK) for d in ("y", "x")}
    store = cube.chunk({"time": -1, **spatial})
    store = store.assign_coords(sensor=store.sensor.astype("U16"))
    for name in store.variables:
        store[name].encoding = {}
    store.attrs = {k: v for k, v in cube.attrs.items()}
    store.drop_vars("spatial_ref", errors="ignore").to_zarr(partial, mode="w", consolidated=True, zarr_format=2)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out
