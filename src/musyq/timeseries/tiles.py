"""Drivers that turn a cube into period products on disk: composites and reconstructed (ARD+) months, each
written as COGs plus a STAC Item, block by block in bounded memory, resuming where a killed run stopped."""

from __future__ import annotations

import json
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox

from musyq.core.errors import MusyqError
from musyq.core.sensors import Band, get_sensor
from musyq.io.output import REFLECTANCE_SCALE, Layer, PeriodName, encode_reflectance, write_cog
from musyq.io.stac import AssetSpec, build_period_item, save_item, update_collection
from musyq.timeseries.composite import BapWeights, Block, composite, periods
from musyq.timeseries.reconstruct import FLAG_NAMES, Reference, ReconstructOptions, merge_same_day, reconstruct
from musyq.timeseries.reference import EPOCH, reference_curves

BLOCK_ROWS = 256
WORKING_BYTES = 4 * 2**30  # a reconstruction block's arrays: the read strip, its series on the nodes, the curves


def reconstruction_rows(width: int, n_bands: int, n_dates: int) -> int:
    """Rows per reconstruction block that keep its arrays near ``WORKING_BYTES`` (about 2.5 float64 values per
    band, guide and weight on each date)."""
    per_row = width * (n_bands + 2) * n_dates * 8 * 2.5
    return max(8, min(BLOCK_ROWS, int(WORKING_BYTES // per_row)))


COMPOSITE_BYTES = 2 * 2**30  # a composite block's bands, their stacked copy and the per-date scores


def composite_rows(width: int, n_bands: int, n_dates: int, halo: int) -> int:
    """Rows per composite block: at least four halos tall where the cloud distance needs one (so the halo read
    twice stays a small share), within ``COMPOSITE_BYTES``."""
    per_row = width * n_dates * (n_bands + 2) * 4 * 3
    return max(8, min(max(BLOCK_ROWS, 4 * halo), int(COMPOSITE_BYTES // per_row)))


Progress = Callable[[str, int, int], None]
COMPOSITE_COLLECTION = "musyq-composites"
COMPOSITE_DESCRIPTION = "musyq composites of ARD over periods"
ARDP_COLLECTION = "musyq-ardp"
ARDP_DESCRIPTION = "musyq ARD+: monthly gap-free surface reflectance"


def _days(cube: xr.Dataset) -> np.ndarray:
    since = (cube.time.values.astype("datetime64[s]") - np.datetime64(EPOCH, "s")) / np.timedelta64(1, "D")
    return np.asarray(since, dtype=np.float64)


def _geobox(cube: xr.Dataset) -> GeoBox:
    geobox = cube.odc.geobox
    if not isinstance(geobox, GeoBox):
        raise MusyqError("the cube has no regular grid")
    return geobox


def _eo_bands(names: tuple[str, ...]) -> tuple[Band, ...]:
    """The cube's harmonized bands described as Landsat OLI's (the bandpass reference) where it has them."""
    oli = get_sensor("L8_OLI")
    described = []
    for name in names:
        try:
            described.append(oli.band("nir08" if name == "nir" else name))
        except MusyqError:
            described.append(get_sensor("S2A_MSI").band(name))
    return tuple(described)


def _band_names(cube: xr.Dataset) -> tuple[str, ...]:
    return tuple(str(v) for v in cube.data_vars if cube[v].attrs.get("long_name", "").startswith("surface refl"))


LayerSpec = tuple[Layer, str, tuple[str, ...], tuple[Band, ...] | None, str | None]


def _write_item(out_dir: Path, name: PeriodName, geobox: GeoBox, layers: list[LayerSpec],
                properties: dict[str, object]) -> Path:
    home = out_dir / name.tile / name.item_id
    # two layers at a time: GDAL releases the GIL, and building overviews runs on one core per file
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda spec: write_cog(home / name.layer(spec[0].name), spec[0], geobox), layers))
    specs = [AssetSpec(layer.name, path, title, roles, bands, layer.descriptions, layer.nodata, layer.scale,
                       layer.data.dtype.name, unit)
             for path, (layer, title, roles, bands, unit) in zip(paths, layers, strict=True)]
    item = build_period_item(name.item_id, datetime.combine(name.start, time.min),
                             datetime.combine(name.end, time.max), name.tile, geobox, specs, properties)
    return save_item(item, home / f"{name.item_id}.json")


def composite_tile(
    cube: xr.Dataset, periods: list[tuple[date, date]], method: str, out_dir: Path,
    weights: BapWeights | None = None, overwrite: bool = False, progress: Progress | None = None,
    update_catalog: bool = True,
) -> list[Path]:
    """One composite per period; periods whose item exists are skipped unless ``overwrite``. Without
    ``update_catalog`` the output folder's collection is left to the caller."""
    geobox = _geobox(cube)
    bands = _band_names(cube)
    tile = str(cube.attrs.get("mgrs_tile", "tile"))
    pixel = float(abs(geobox.resolution.x))
    sensors = sorted({str(s) for s in cube.sensor.values})
    days_all = _days(cube)
    weights = weights or BapWeights()
    halo = int(np.ceil(weights.cloud_distance / pixel)) if method == "bap" else 0
    written = []
    for first, last in periods:
        name = PeriodName(method.upper().replace("-", ""), pixel, first, last, tile)
        item_path = out_dir / tile / name.item_id / f"{name.item_id}.json"
        if item_path.exists() and not overwrite:
            written.append(item_path)
            continue
        lo, hi = (first - EPOCH).days, (last - EPOCH).days + 1
        index = np.flatnonzero((days_all >= lo) & (days_all < hi))
        if index.size == 0:
            continue
        part = cube.isel(time=index)
        height, width = geobox.shape.yx
        values = np.full((len(bands), height, width), np.nan, dtype=np.float32)
        with_sigma = f"{bands[0]}_sigma" in cube
        sigma = np.full_like(values, np.nan) if with_sigma else None
        chosen_day = np.zeros((height, width), dtype=np.uint16)
        count = np.zeros((height, width), dtype=np.uint16)
        sensor = np.full((height, width), 255, dtype=np.uint8)
        time_sensor = [str(s) for s in part.sensor.values]
        codes = np.array([sensors.index(s) for s in time_sensor])
        rows = composite_rows(width, len(bands), index.size, halo)
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            start, stop = max(0, top - halo), min(height, bottom + halo)
            strip = part.isel(y=slice(start, stop)).compute()
            block = Block(days_all[index], np.stack([strip[b].values for b in bands]), bands,
                          strip["quality"].values, strip["view_zenith"].values, tuple(time_sensor), pixel,
                          np.stack([strip[f"{b}_sigma"].values for b in bands]) if with_sigma else None)
            result = composite(block, method, (lo + hi) / 2, (hi - lo) / 2, weights)
            inner = slice(top - start, top - start + bottom - top)
            values[:, top:bottom] = result.values[:, inner]
            if sigma is not None and result.sigma is not None:
                sigma[:, top:bottom] = result.sigma[:, inner]
            day = result.day[inner]
            chosen_day[top:bottom] = np.where(np.isfinite(day), np.nan_to_num(day), 0).astype(np.uint16)
            count[top:bottom] = result.clear_count[inner]
            picked = result.sensor[inner]
            sensor[top:bottom] = np.where(picked >= 0, codes[np.maximum(picked, 0)], 255)
            if progress:
                progress(name.item_id, bottom, height)
        legend = {i: s for i, s in enumerate(sensors)}
        layers: list[LayerSpec] = [
            (Layer("SR", encode_reflectance(values), 0, bands, 1 / REFLECTANCE_SCALE), f"{method} composite "
             "surface reflectance", ("data", "reflectance"), _eo_bands(bands), "1"),
            *([(Layer("SIGMA", encode_reflectance(sigma), 0, bands, 1 / REFLECTANCE_SCALE),
                 "One standard deviation of the composite reflectance: the chosen observation's SR uncertainty "
                 "(the median's: from the period's)", ("data", "uncertainty"), _eo_bands(bands), "1")]
              if sigma is not None else []),
            (Layer("DATE", chosen_day, 0, ("days since 1970-01-01",), resampling="nearest"),
             "Day of the chosen observation (days since 1970-01-01)", ("metadata", "date"), None, "day"),
            (Layer("COUNT", count, 65535, ("clear observations",), resampling="nearest"),
             "Clear observations in the period", ("metadata", "count"), None, None),
            (Layer("SENSOR", sensor, 255, ("sensor",), resampling="nearest"),
             "Sensor of the chosen observation: " + ", ".join(f"{k} {v}" for k, v in legend.items()),
             ("metadata", "sensor"), None, None),
        ]
        properties: dict[str, object] = {"musyq:composite_method": method, "musyq:sensors": legend,
                                         "musyq:observations": int(index.size)}
        if method == "bap":
            properties["musyq:bap_weights"] = asdict(weights)
        written.append(_write_item(out_dir, name, geobox, layers, properties))
    if written and update_catalog:
        update_collection(out_dir, written, COMPOSITE_COLLECTION, COMPOSITE_DESCRIPTION)
    return written


def _ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((nir - red) / (nir + red))


def reconstruct_tile(
    cube: xr.Dataset, start: date, end: date, out_dir: Path, options: ReconstructOptions,
    overwrite: bool = False, progress: Progress | None = None, reference: list[Path] | None = None,
    update_catalog: bool = True,
) -> list[Path]:
    """Monthly ARD+ (``ARDP``) from ``start`` to ``end``: every band at mid-month, gaps filled, flagged and with
    an uncertainty. Blocks land in a Zarr work store first, so a killed run resumes at the next block.
    ``reference``: MODIS files or folders whose curves guide the series (see :mod:`musyq.timeseries.reference`).
    """
    geobox = _geobox(cube)
    bands = _band_names(cube)
    if "red" not in bands or "nir" not in bands:
        raise MusyqError("reconstruction needs the red and nir bands (its guide is NDVI)")
    present = [b for b in bands if b not in cube.attrs.get("absent_bands", ())]
    tile = str(cube.attrs.get("mgrs_tile", "tile"))
    pixel = float(abs(geobox.resolution.x))
    months = periods(start, end, "month")
    names = [PeriodName("ARDP", pixel, a, b, tile) for a, b in months]
    items = [out_dir / tile / n.item_id / f"{n.item_id}.json" for n in names]
    if all(p.exists() for p in items) and not overwrite:
        return items
    days = _days(cube)
    mid = np.array([(a - EPOCH).days + 14.0 for a, _ in months])
    windows = np.array([[(a - EPOCH).days, (b - EPOCH).days + 1.0] for a, b in months])
    height, width = geobox.shape.yx
    curves = None
    if reference:
        curves = reference_curves(reference, geobox, np.union1d(np.floor(days), mid), ("ndvi",) + tuple(present))
        if "ndvi" not in curves.curves:
            raise MusyqError("the reference has no NDVI and no red and NIR to make it from")
    work = out_dir / ".work" / f"ARDP.{tile}.{start:%Y%m%d}-{end:%Y%m%d}.zarr"
    # blocks finished under other settings are not resumed
    with_sr_sigma = f"{present[0]}_sigma" in cube
    settings = json.dumps({"options": asdict(options), "reference": sorted(str(p) for p in reference or []),
                           "sr_sigma": with_sr_sigma}, sort_keys=True)
    if overwrite or (work.exists() and zarr.open_group(str(work), mode="r").attrs.get("settings") != settings):
        shutil.rmtree(work, ignore_errors=True)
    root = zarr.open_group(str(work), mode="a", zarr_format=2)
    shape = (len(present), len(months), height, width)
    # a reference adds a curve per band and the guide to every block
    variables = 2 * len(present) + 1 if curves else len(present)
    rows = reconstruction_rows(width, variables, days.size + len(months))
    chunks = (len(present), len(months), rows, width)
    if "values" not in root:
        root.create_array("values", shape=shape, chunks=chunks, dtype="float32", fill_value=np.nan)
        root.create_array("sigma", shape=shape, chunks=chunks, dtype="float32", fill_value=np.nan)
        root.create_array("flag", shape=shape[1:], chunks=chunks[1:], dtype="uint8", fill_value=0)
        root.attrs["done"] = []
        root.attrs["settings"] = settings
    stored = {name: cast("zarr.Array[Any]", root[name]) for name in ("values", "sigma", "flag")}
    rows = stored["flag"].chunks[1]
    done = {int(v) for v in cast(list[int], root.attrs["done"])}
    halo = options.window
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        if top not in done:
            lo, hi = max(0, top - halo), min(height, bottom + halo)
            strip = cube.isel(y=slice(lo, hi)).compute()
            data = np.stack([strip[b].values for b in present])
            clear = np.isin(strip["quality"].values, (1, 2)).astype(np.float32)
            guide = _ndvi(data[present.index("red")], data[present.index("nir")])
            merged_days, merged, weight = _merged(days, data, clear)
            _, merged_guide, _ = _merged(days, guide[None], clear)
            guidance = None
            if curves is not None:
                block = geobox[lo:hi, :]
                missing = np.full((curves.days.size,) + block.shape.yx, np.nan, dtype=np.float32)
                guidance = Reference(curves.days, curves.sample(block, "ndvi"), np.stack(
                    [curves.sample(block, b) if b in curves.curves else missing for b in present]))
            result = reconstruct(merged_days, merged, weight, mid, guide=merged_guide[0], options=options,
                                 windows=windows, reference=guidance)
            inner = slice(top - lo, top - lo + bottom - top)
            sigma = result.sigma[:, :, inner]
            if with_sr_sigma:
                observed = np.stack([strip[f"{b}_sigma"].values[:, inner] for b in present])
                sigma = _with_observation_sigma(sigma, observed, clear[:, inner] > 0, days, windows)
            stored["values"][:, :, top:bottom] = result.values[:, :, inner]
            stored["sigma"][:, :, top:bottom] = sigma
            stored["flag"][:, top:bottom] = result.flag[:, inner]
            done.add(top)
            root.attrs["done"] = sorted(done)
        if progress:
            progress("reconstruct", bottom, height)
    legend = "; ".join(f"{k} {v}" for k, v in FLAG_NAMES.items())
    written = []
    for k, (name, item_path) in enumerate(zip(names, items, strict=True)):
        if item_path.exists() and not overwrite:
            written.append(item_path)
            continue
        values = np.asarray(stored["values"][:, k])
        sigma = np.asarray(stored["sigma"][:, k])
        flag = np.asarray(stored["flag"][k])
        layers: list[LayerSpec] = [
            (Layer("SR", encode_reflectance(values), 0, tuple(present), 1 / REFLECTANCE_SCALE),
             "Reconstructed surface reflectance at mid-month", ("data", "reflectance"), _eo_bands(tuple(present)),
             "1"),
            (Layer("SIGMA", encode_reflectance(sigma), 0, tuple(present), 1 / REFLECTANCE_SCALE),
             "One standard deviation of the reconstructed reflectance" + (", joined by the SR uncertainty of its "
                                                                         "observations" if with_sr_sigma else ""),
             ("data", "uncertainty"),
             _eo_bands(tuple(present)), "1"),
            (Layer("FLAG", flag, 255, ("reconstruction",), resampling="nearest"), f"How each pixel was made: {legend}",
             ("metadata", "quality"), None, None),
        ]
        shares = {FLAG_NAMES[f]: round(100 * float(np.mean(flag == f)), 2) for f in FLAG_NAMES}
        properties: dict[str, object] = {"musyq:reconstruction": asdict(options), "musyq:flag_percent": shares,
                                         "musyq:reference": list(curves.sources) if curves else [],
                                         "musyq:sensors": sorted({str(s) for s in cube.sensor.values}),
                                         "musyq:mid_month_day": (name.start + timedelta(days=14)).isoformat()}
        written.append(_write_item(out_dir, name, geobox, layers, properties))
    if update_catalog:
        update_collection(out_dir, written, ARDP_COLLECTION, ARDP_DESCRIPTION)
    shutil.rmtree(work, ignore_errors=True)
    if not any(work.parent.iterdir()):
        work.parent.rmdir()
    return written


def _with_observation_sigma(sigma: np.ndarray, observed: np.ndarray, clear: np.ndarray, days: np.ndarray,
                            windows: np.ndarray) -> np.ndarray:
    """The reconstruction's sigma (bands, months, rows, cols) joined in quadrature by the SR uncertainty of the
    observations it rests on: the mean variance of the month's clear observations, or of all the pixel's
    where the month has none (a filled month inherits the level of its inputs). No SR uncertainty, no change."""
    variance = np.where(clear[None], observed.astype(np.float32) ** 2, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: pixels or months without observations
        overall = np.nanmean(variance, axis=1)
        joined = np.empty_like(sigma)
        for month, (first, last) in enumerate(windows):
            inside = (days >= first) & (days < last)
            level = np.nanmean(variance[:, inside], axis=1) if inside.any() else overall
            level = np.where(np.isfinite(level), level, overall)
            joined[:, month] = np.where(np.isfinite(level), np.sqrt(sigma[:, month] ** 2 + level), sigma[:, month])
    return joined


def _merged(days: np.ndarray, data: np.ndarray, clear: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same-day observations of different sensors as one (the smoother needs one value per day)."""
    return merge_same_day(np.floor(days), data, clear)
