"""BRDF normalization to nadir view (NBAR) with the c-factor method.

Reflectance seen off nadir, or under another sun, differs from what the same surface would show
seen straight down under a standard sun. The RossThick-LiSparse-Reciprocal model (Lucht et al.
2000, the MODIS MCD43 kernels) describes that shape; the c-factor method (Roy et al. 2016) keeps the
observation and scales it by the ratio of the modelled reflectance in the standard geometry to that
in the observed one, so only the shape of the BRDF matters, not its level:

    NBAR = rho * BRDF(sun_nbar, 0, 0) / BRDF(sun, view, relative azimuth)

The BRDF shape comes either from Roy's fixed global coefficients per band (as HLS), or from
per-pixel parameters of the same place (iso, vol, geo per band, MCD43A1 style) as a prior.
The standard sun zenith is HLS v2's: the mean of the sun zeniths at the Landsat 8 and Sentinel-2
overpass times for the tile-centre latitude on the acquisition day (Li, Zhang & Roy 2019).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import ArrayLike, NDArray
from odc.geo.geobox import GeoBox

from musyq.ard.atmcor import coarse_nodes, upsample
from musyq.core.errors import InputError
from musyq.core.sensors import Band
from musyq.core.solar import solar_angles
from musyq.core.tiling import warp_to

Array = NDArray[np.float64]
KERNEL_STEP = 16  # pixels between the nodes where the kernels are evaluated; the angles vary slowly
POLAR_LATITUDE = 81.3  # above it there is no modelled overpass time; the observed sun zenith is used
# Orbit inclination (degrees) and local time at the descending node (hours), Li et al. (2019) Eq. 4
OVERPASS = {"landsat-8": (98.2, 10.0 + 11.0 / 60.0), "sentinel-2": (98.62, 10.5)}


@dataclass(frozen=True)
class Coefficients:
    """Isotropic, volumetric (RossThick) and geometric (LiSparse-R) weights of one band."""

    iso: float
    vol: float
    geo: float


def ross_thick(sun_zenith: ArrayLike, view_zenith: ArrayLike, relative_azimuth: ArrayLike) -> Array:
    """RossThick volume-scattering kernel; angles in degrees, relative azimuth 0 = backscatter."""
    sun, view, phi = (np.radians(np.asarray(a, dtype=np.float64)) for a in (sun_zenith, view_zenith,
                                                                            relative_azimuth))
    cos_xi = np.clip(np.cos(sun) * np.cos(view) + np.sin(sun) * np.sin(view) * np.cos(phi), -1.0, 1.0)
    xi = np.arccos(cos_xi)
    return np.asarray(((np.pi / 2 - xi) * cos_xi + np.sin(xi)) / (np.cos(sun) + np.cos(view)) - np.pi / 4)


def li_sparse(sun_zenith: ArrayLike, view_zenith: ArrayLike, relative_azimuth: ArrayLike) -> Array:
    """LiSparse-Reciprocal geometric-optical kernel with MODIS's crown shape (h/b = 2, b/r = 1)."""
    sun, view, phi = (np.radians(np.asarray(a, dtype=np.float64)) for a in (sun_zenith, view_zenith,
                                                                            relative_azimuth))
    tan_s, tan_v = np.tan(sun), np.tan(view)
    sec_s, sec_v = 1.0 / np.cos(sun), 1.0 / np.cos(view)
    cos_xi = np.cos(sun) * np.cos(view) + np.sin(sun) * np.sin(view) * np.cos(phi)
    distance_sq = np.maximum(tan_s**2 + tan_v**2 - 2 * tan_s * tan_v * np.cos(phi), 0.0)
    cos_t = np.clip(2.0 * np.sqrt(distance_sq + (tan_s * tan_v * np.sin(phi)) ** 2) / (sec_s + sec_v), -1.0, 1.0)
    t = np.arccos(cos_t)
    overlap = (t - np.sin(t) * cos_t) * (sec_s + sec_v) / np.pi
    return np.asarray(overlap - sec_s - sec_v + 0.5 * (1 + cos_xi) * sec_s * sec_v)


def brdf(coefficients: Coefficients, sun_zenith: ArrayLike, view_zenith: ArrayLike,
         relative_azimuth: ArrayLike) -> Array:
    """Modelled reflectance of one band in a geometry."""
    return np.asarray(coefficients.iso + coefficients.vol * ross_thick(sun_zenith, view_zenith, relative_azimuth)
                      + coefficients.geo * li_sparse(sun_zenith, view_zenith, relative_azimuth))


def c_factor(coefficients: Coefficients, sun_zenith: ArrayLike, view_zenith: ArrayLike,
             relative_azimuth: ArrayLike, nbar_sun_zenith: float) -> Array:
    """The factor that takes a reflectance from the observed geometry to nadir view under the NBAR sun."""
    return np.asarray(brdf(coefficients, nbar_sun_zenith, 0.0, 0.0)
                      / brdf(coefficients, sun_zenith, view_zenith, relative_azimuth))


@cache
def _roy_table() -> dict[str, dict[str, float]]:
    text = resources.files("musyq").joinpath("data", "brdf", "roy.json").read_text()
    return dict(json.loads(text)["bands"])


def roy_coefficients(band: Band) -> Coefficients | None:
    """Roy et al.'s fixed coefficients of a band: by common name, else interpolated in wavelength.

    Bands outside the table's range (thermal, cirrus, water vapour) have none and are left alone.
    """
    table = _roy_table()
    if band.kind != "reflectance" or band.common_name in ("cirrus", "wv", "pan"):
        return None
    if band.common_name == "coastal":
        return Coefficients(table["blue"]["iso"], table["blue"]["vol"], table["blue"]["geo"])
    if band.common_name in table:
        entry = table[band.common_name]
        return Coefficients(entry["iso"], entry["vol"], entry["geo"])
    entries = sorted(table.values(), key=lambda e: e["wavelength"])
    wavelengths = [e["wavelength"] for e in entries]
    if not wavelengths[0] <= band.center_wavelength <= wavelengths[-1]:
        return None
    return Coefficients(*(float(np.interp(band.center_wavelength, wavelengths, [e[k] for e in entries]))
                          for k in ("iso", "vol", "geo")))


def overpass_local_time(platform: str, latitude: float) -> float:
    """Local solar time (hours) at which a sun-synchronous satellite passes a latitude (Li et al. 2019, Eq. 4)."""
    inclination, descending_node = OVERPASS[platform]
    return descending_node - math.degrees(
        math.asin(math.tan(math.radians(latitude)) / math.tan(math.radians(inclination)))) / 15.0


def overpass_sun_zenith(platform: str, latitude: float, longitude: float, day: datetime) -> float:
    """Sun zenith at the satellite's modelled overpass over a place on the local date of ``day``."""
    local_hours = overpass_local_time(platform, latitude)
    local_day = (day + timedelta(hours=longitude / 15.0)).date()
    when = datetime(local_day.year, local_day.month, local_day.day) + timedelta(hours=local_hours - longitude / 15.0)
    zenith, _ = solar_angles(when, latitude, longitude)
    return float(zenith)


def nbar_sun_zenith(latitude: float, longitude: float, acquired: datetime, observed_sun_zenith: float) -> float:
    """HLS v2's standard sun zenith for a tile centre: the mean over the Landsat 8 and Sentinel-2 overpasses."""
    if abs(latitude) > POLAR_LATITUDE:
        return observed_sun_zenith
    return 0.5 * sum(overpass_sun_zenith(p, latitude, longitude, acquired) for p in OVERPASS)


@dataclass(frozen=True)
class KernelGrids:
    """Volume and geometric kernels per pixel, observed and in the NBAR geometry."""

    vol: NDArray[np.float32]
    geo: NDArray[np.float32]
    vol_nbar: float
    geo_nbar: float

    @classmethod
    def from_angles(cls, angles: NDArray[np.float32], nbar_zenith: float) -> KernelGrids:
        """From the ARD angle stack (sun azimuth, sun zenith, view azimuth, view zenith), via a coarse grid."""
        shape = (int(angles.shape[1]), int(angles.shape[2]))
        rows, cols = coarse_nodes(shape[0], KERNEL_STEP), coarse_nodes(shape[1], KERNEL_STEP)
        sun_azimuth, sun_zenith, view_azimuth, view_zenith = (np.asarray(a[np.ix_(rows, cols)], dtype=np.float64)
                                                              for a in angles)
        known = np.isfinite(sun_zenith) & np.isfinite(view_zenith)
        fill = (float(np.mean(sun_zenith[known])), float(np.mean(view_zenith[known]))) if known.any() else (0.0, 0.0)
        sun_zenith = np.where(known, sun_zenith, fill[0])
        view_zenith = np.where(known, view_zenith, fill[1])
        relative = np.where(known, view_azimuth - sun_azimuth, 0.0)
        return cls(upsample(ross_thick(sun_zenith, view_zenith, relative), rows, cols, shape),
                   upsample(li_sparse(sun_zenith, view_zenith, relative), rows, cols, shape),
                   float(ross_thick(nbar_zenith, 0.0, 0.0)), float(li_sparse(nbar_zenith, 0.0, 0.0)))


@dataclass(frozen=True)
class BrdfParameters:
    """Per-pixel iso, vol and geo weights by common band name, on the tile grid (NaN where unknown)."""

    by_band: dict[str, tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]]


def load_brdf_parameters(path: Path, geobox: GeoBox) -> BrdfParameters:
    """BRDF parameters from a raster whose band descriptions are ``<common name>_iso|_vol|_geo``.

    Any grid and projection (an MCD43A1 mosaic exported to GeoTIFF, for example): the parameters are
    resampled bilinearly onto ``geobox``, scale/offset tags applied, nodata kept as NaN.
    """
    try:
        with rasterio.open(path) as source:
            names = [(d or "").strip().lower() for d in source.descriptions]
            found: dict[str, dict[str, NDArray[np.float32]]] = {}
            for index, name in enumerate(names):
                band, _, kernel = name.rpartition("_")
                if kernel in ("iso", "vol", "geo") and band:
                    found.setdefault(band, {})[kernel] = warp_to(source, index, geobox)
    except rasterio.RasterioIOError as exc:
        raise InputError(path, f"cannot read the BRDF parameters: {exc}") from None
    complete = {b: (k["iso"], k["vol"], k["geo"]) for b, k in found.items() if len(k) == 3}
    if not complete:
        raise InputError(path, "no band triplet described as <band>_iso, <band>_vol, <band>_geo (for example "
                               f"red_iso); the descriptions are {names}")
    return BrdfParameters(complete)


# The c-factor's own error: how far a pixel's true BRDF shape departs from the one assumed, taken as a share
# of the correction made. With the global fixed shape, half of it (a pixel may be anywhere from isotropic to
# twice as anisotropic); with per-pixel parameters, a quarter (their own retrieval error).
SHAPE_ERROR_FIXED, SHAPE_ERROR_PRIOR = 0.5, 0.25


def _apply_factor(reflectance: NDArray[np.float32], factor: NDArray[np.float32], shape_error: NDArray[np.float32] | float,
                  uncertainty: NDArray[np.float32] | None) -> None:
    if uncertainty is not None:
        correction = shape_error * np.abs(factor - np.float32(1.0)) * reflectance * factor
        uncertainty[...] = np.hypot(uncertainty * factor, correction)
    reflectance *= factor


def normalize_band(
    reflectance: NDArray[np.float32], band: Band, kernels: KernelGrids, prior: BrdfParameters | None = None,
    uncertainty: NDArray[np.float32] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """NBAR of one band in place of ``reflectance``; returns it and where per-pixel parameters were used.
    ``uncertainty`` (the band's sigma) is scaled by the factor and takes the factor's own error, in place.

    Where the prior has no valid parameters (or none for this band), Roy's fixed coefficients serve.
    """
    fixed = roy_coefficients(band)
    used_prior = np.zeros(reflectance.shape, dtype=bool)
    if fixed is None:
        return reflectance, used_prior
    if prior is None or band.common_name not in prior.by_band:
        # one set of coefficients: the factor needs only the two kernel grids
        observed = np.float32(fixed.iso) + np.float32(fixed.vol) * kernels.vol + np.float32(fixed.geo) * kernels.geo
        standard = np.float32(fixed.iso + fixed.vol * kernels.vol_nbar + fixed.geo * kernels.geo_nbar)
        factor = np.where(observed > 0, standard / observed, np.float32(1.0)).astype(np.float32)
        _apply_factor(reflectance, factor, SHAPE_ERROR_FIXED, uncertainty)
        return reflectance, used_prior
    iso = np.full(reflectance.shape, fixed.iso, dtype=np.float32)
    vol = np.full(reflectance.shape, fixed.vol, dtype=np.float32)
    geo = np.full(reflectance.shape, fixed.geo, dtype=np.float32)
    p_iso, p_vol, p_geo = prior.by_band[band.common_name]
    used_prior = np.isfinite(p_iso) & np.isfinite(p_vol) & np.isfinite(p_geo) & (p_iso > 0)
    iso[used_prior], vol[used_prior], geo[used_prior] = p_iso[used_prior], p_vol[used_prior], p_geo[used_prior]
    observed = iso + vol * kernels.vol + geo * kernels.geo
    standard = iso + vol * np.float32(kernels.vol_nbar) + geo * np.float32(kernels.geo_nbar)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(observed > 0, standard / observed, np.float32(1.0)).astype(np.float32)
    shape_error = np.where(used_prior, np.float32(SHAPE_ERROR_PRIOR), np.float32(SHAPE_ERROR_FIXED))
    _apply_factor(reflectance, factor, shape_error, uncertainty)
    return reflectance, used_prior
