"""Validation of a product against ground values or a reference raster, as CEOS LPV reports it: accuracy,
precision and uncertainty (APU, Vermote & Kotchenova 2008) overall and per reference bin, bias, RMSE, r, the
regression line and the share within a stated requirement.

Ground values are matched with the product date closest in time within a window, on a square of pixels around
the site that must be homogeneous (coefficient of variation under a limit) and mostly valid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
from numpy.typing import NDArray
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from musyq.core.errors import InputError, MusyqError
from musyq.io.catalog import as_datetime
from musyq.io.sites import GroundValue
from musyq.io.stac import COLLECTION_FILE

# GCOS-style requirements: max(absolute, relative * reference) for the biophysical variables; MODIS-style
# additive envelopes (absolute + relative * reference) for reflectance and indices
REQUIREMENTS = {"LAI": "0.5|20%", "FAPAR": "0.05|10%", "FCOVER": "0.05|10%", "FVC": "0.05|10%",
                "SR": "0.005+5%", "NDVI": "0.02+2%", "EVI": "0.02+2%"}
DEFAULT_REQUIREMENT = "0.05+5%"
BINS = 6


@dataclass(frozen=True)
class Requirement:
    absolute: float
    relative: float
    combine: str  # "max" (GCOS) or "sum" (MODIS envelopes)

    @classmethod
    def parse(cls, text: str) -> Requirement:
        """``0.5|20%``: the larger of 0.5 and 20 % of the reference; ``0.005+5%``: their sum."""
        match = re.fullmatch(r"\s*([0-9.]+)\s*([|+])\s*([0-9.]+)\s*%\s*", text) or re.fullmatch(
            r"\s*([0-9.]+)\s*()()", text)
        if not match:
            raise MusyqError(f"requirement {text!r} is not ABS|REL% (the larger), ABS+REL% (the sum) or ABS")
        absolute, operator, relative = match.groups()
        return cls(float(absolute), float(relative or 0) / 100, "max" if operator in ("|", "") else "sum")

    def tolerance(self, reference: NDArray[np.floating]) -> NDArray[np.float64]:
        scaled = self.relative * np.abs(np.asarray(reference, dtype=np.float64))
        return np.asarray(np.maximum(self.absolute, scaled) if self.combine == "max" else self.absolute + scaled)

    def describe(self) -> str:
        relative = f"{100 * self.relative:g} % of the reference"
        return (f"max({self.absolute:g}, {relative})" if self.combine == "max"
                else f"{self.absolute:g} + {relative}")


@dataclass(frozen=True)
class Statistics:
    count: int
    accuracy: float  # mean residual (bias)
    precision: float  # standard deviation of the residuals
    uncertainty: float  # RMS of the residuals (= RMSE)
    r: float
    slope: float
    intercept: float
    within_requirement: float  # share of matches within the requirement
    mean_reference: float
    mean_estimate: float
    within_product_sigma: float  # share of |residual| under the product's (and reference's) combined sigma


def statistics(estimate: NDArray[np.floating], reference: NDArray[np.floating], requirement: Requirement,
               sigma: NDArray[np.floating] | None = None) -> Statistics:
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if estimate.size < 2:
        raise MusyqError(f"{estimate.size} match(es) are too few for statistics")
    residual = estimate - reference
    accuracy = float(residual.mean())
    precision = float(residual.std(ddof=1))
    rms = float(np.sqrt(np.mean(residual**2)))
    varies = np.ptp(reference) > 0 and np.ptp(estimate) > 0
    r = float(np.corrcoef(estimate, reference)[0, 1]) if varies else float("nan")
    slope, intercept = (np.polyfit(reference, estimate, 1) if np.ptp(reference) > 0 else (float("nan"),) * 2)
    within_sigma = float(np.mean(np.abs(residual) <= sigma)) if sigma is not None and np.isfinite(sigma).any() \
        else float("nan")
    return Statistics(int(estimate.size), accuracy, precision, rms, r, float(slope), float(intercept),
                      float(np.mean(np.abs(residual) <= requirement.tolerance(reference))), float(reference.mean()),
                      float(estimate.mean()), within_sigma)


def binned_apu(estimate: NDArray[np.floating], reference: NDArray[np.floating],
               bins: int = BINS) -> list[dict[str, float]]:
    """A, P and U per bin of the reference (equal counts), as APU plots show them."""
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    rows = []
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        inside = (reference >= low) & ((reference < high) if k < len(edges) - 2 else (reference <= high))
        if inside.sum() < 2:
            continue
        residual = estimate[inside] - reference[inside]
        rows.append({"low": float(low), "high": float(high), "count": int(inside.sum()),
                     "centre": float(reference[inside].mean()), "accuracy": float(residual.mean()),
                     "precision": float(residual.std(ddof=1)), "uncertainty": float(np.sqrt(np.mean(residual**2)))})
    return rows


@dataclass(frozen=True)
class ProductRaster:
    path: Path
    when: datetime
    band: int  # 1-based
    sigma_path: Path | None


def _band_index(dataset: rasterio.DatasetReader, band: str | None, path: Path) -> int:
    if band is None:
        return 1
    if band.isdigit():
        return int(band)
    names = [d or "" for d in dataset.descriptions]
    if band not in names:
        raise InputError(path, f"has no band described {band!r}; it has {', '.join(n or '?' for n in names)}")
    return names.index(band) + 1


def find_rasters(product: str, inputs: Sequence[Path], band: str | None = None,
                 when: str | None = None) -> list[ProductRaster]:
    """The product's rasters: from musyq product catalogs (items of ``product``, with their sigma layer), or
    GeoTIFFs dated by ``when`` or by their ``datetime`` tag."""
    found = []
    for path in inputs:
        if not path.exists():
            raise InputError(path, "does not exist")
        if path.is_dir() or path.suffix == ".json":
            collection = path / COLLECTION_FILE if path.is_dir() else path
            if not collection.exists():
                raise InputError(path, f"holds no {COLLECTION_FILE} (not a musyq output folder)")
            for item in pystac.Collection.from_file(str(collection)).get_items(recursive=True):
                if item.properties.get("musyq:product") != product or product not in item.assets:
                    continue
                moment = item.datetime or as_datetime(str(item.properties["start_datetime"]))
                if item.datetime is None:  # a period: its middle
                    moment += (as_datetime(str(item.properties["end_datetime"])) - moment) / 2
                sigma = item.assets.get(f"{product}_SIGMA")
                found.append(ProductRaster(Path(item.assets[product].get_absolute_href() or ""), moment, 1,
                                           Path(sigma.get_absolute_href() or "") if sigma else None))
            continue
        try:
            with rasterio.open(path) as dataset:
                stamp = when or dataset.tags().get("datetime")
                index = _band_index(dataset, band, path)
        except rasterio.RasterioIOError as exc:
            raise InputError(path, f"is not a readable raster: {exc}") from None
        if not stamp:
            raise InputError(path, "carries no datetime tag; give --date")
        found.append(ProductRaster(path, as_datetime(stamp), index, None))
    if not found:
        raise MusyqError(f"no {product} raster in {', '.join(map(str, inputs))}")
    return sorted(found, key=lambda r: r.when)


@dataclass(frozen=True)
class Match:
    site: str
    lon: float
    lat: float
    ground_time: str
    product_time: str
    reference: float
    reference_sigma: float
    estimate: float
    estimate_sigma: float
    window_cv: float
    days_apart: float


@dataclass(frozen=True)
class Rejection:
    site: str
    ground_time: str
    reason: str


def _window(path: Path, band: int, lon: float, lat: float, size: int) -> NDArray[np.float64] | None:
    with rasterio.open(path) as dataset:
        x, y = Transformer.from_crs("EPSG:4326", dataset.crs, always_xy=True).transform(lon, lat)
        row, col = dataset.index(x, y)
        half = size // 2
        if not (half <= row < dataset.height - half and half <= col < dataset.width - half):
            return None
        values = dataset.read(band, window=Window(col - half, row - half, size, size)).astype(np.float64)
        if dataset.nodatavals[band - 1] is not None and np.isfinite(dataset.nodatavals[band - 1]):
            values[values == dataset.nodatavals[band - 1]] = np.nan
        return np.asarray(values * dataset.scales[band - 1] + dataset.offsets[band - 1], dtype=np.float64)


def match_ground(ground: Sequence[GroundValue], rasters: Sequence[ProductRaster], days: float, window: int,
                 max_cv: float, min_valid: float = 2 / 3) -> tuple[list[Match], list[Rejection]]:
    """Each ground value with the closest product date within ``days``, averaged over ``window`` x ``window``
    pixels that are at least ``min_valid`` valid and whose coefficient of variation is at most ``max_cv``."""
    if window < 1 or window % 2 == 0:
        raise MusyqError(f"the spatial window must be an odd number of pixels, not {window}")
    matches, rejected = [], []
    for value in ground:
        when = value.when
        close = [r for r in rasters if abs((r.when - when).total_seconds()) <= days * 86400]
        label = when.strftime("%Y-%m-%dT%H:%MZ")
        if not close:
            rejected.append(Rejection(value.site, label, f"no product within {days:g} days"))
            continue
        # the closest date whose raster holds the site (a catalog holds many tiles)
        found = None
        for raster in sorted(close, key=lambda r: abs((r.when - when).total_seconds())):
            pixels = _window(raster.path, raster.band, value.lon, value.lat, window)
            if pixels is not None:
                found = raster, pixels
                break
        if found is None:
            rejected.append(Rejection(value.site, label, "outside every product raster of those days"))
            continue
        raster, pixels = found
        valid = pixels[np.isfinite(pixels)]
        if valid.size < min_valid * pixels.size:
            rejected.append(Rejection(value.site, label, f"{valid.size} of {pixels.size} pixels valid"))
            continue
        mean = float(valid.mean())
        cv = float(valid.std() / abs(mean)) if mean != 0 else float("inf")
        if cv > max_cv:
            rejected.append(Rejection(value.site, label, f"heterogeneous (CV {cv:.2f} > {max_cv:g})"))
            continue
        sigma = float("nan")
        if raster.sigma_path is not None:
            spread = _window(raster.sigma_path, 1, value.lon, value.lat, window)
            if spread is not None and np.isfinite(spread).any():
                sigma = float(np.nanmean(spread))
        matches.append(Match(value.site, value.lon, value.lat, label, raster.when.strftime("%Y-%m-%dT%H:%MZ"),
                             value.value, value.uncertainty, mean, sigma, cv,
                             abs((raster.when - when).total_seconds()) / 86400))
    return matches, rejected


def match_raster(raster: ProductRaster, reference: Path, reference_band: str | None = None
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pixel pairs of the product and a reference raster on the coarser of the two grids (the finer one
    averaged onto it), where both are valid."""
    with rasterio.open(raster.path) as product, rasterio.open(reference) as truth:
        band = _band_index(truth, reference_band, reference)
        product_size = abs(product.transform.a) * (1 if product.crs.is_projected else 111_320)
        truth_size = abs(truth.transform.a) * (1 if truth.crs.is_projected else 111_320)
        coarse, fine, coarse_band, fine_band = (truth, product, band, raster.band) if truth_size >= product_size \
            else (product, truth, raster.band, band)

        def physical(dataset: rasterio.DatasetReader, index: int) -> NDArray[np.float64]:
            values = dataset.read(index).astype(np.float64)
            nodata = dataset.nodatavals[index - 1]
            if nodata is not None and np.isfinite(nodata):
                values[values == nodata] = np.nan
            return np.asarray(values * dataset.scales[index - 1] + dataset.offsets[index - 1], dtype=np.float64)

        target = physical(coarse, coarse_band)
        moved = np.full(target.shape, np.nan)
        reproject(physical(fine, fine_band), moved, src_transform=fine.transform, src_crs=fine.crs,
                  dst_transform=coarse.transform, dst_crs=coarse.crs, src_nodata=np.nan, dst_nodata=np.nan,
                  resampling=Resampling.average)
    estimate, truth_values = (moved, target) if coarse is truth else (target, moved)
    both = np.isfinite(estimate) & np.isfinite(truth_values)
    if not both.any():
        raise MusyqError(f"{raster.path.name} and {reference.name} share no valid pixel")
    return estimate[both], truth_values[both]


def summary(statistics_: Statistics) -> dict[str, float]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(statistics_).items()}

