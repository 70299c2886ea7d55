"""Cross-calibration: per-band gains of one sensor against a reference sensor over a shared stable site.

Both near-simultaneous scenes are put on the same coarse grid (averaging out misregistration). The
reference's TOA is corrected to surface reflectance, with its own aerosol retrieval or a given one; the
site's own spectrum at every pixel (the mixture of the shipped vegetation and soil spectra that best
matches the reference bands) gives the spectral band adjustment factor to each target band; Roy et al.'s
BRDF shape takes the surface to the target's sun and view; the same atmosphere in the target's geometry
predicts its TOA. The gain is the observed over the predicted TOA, fitted through the origin over
homogeneous pixels with outliers clipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from musyq.ard.atmcor import Atmosphere, coefficients, toa_reflectance
from musyq.ard.bandpass import pair_bands
from musyq.ard.brdf import brdf, roy_coefficients
from musyq.ard.lut import load_table
from musyq.ard.pipeline import ArdOptions, covered_window, toa_on_tile
from musyq.ard.surface import AtmosphereOptions, correct_tile, load_elevation
from musyq.core.errors import MusyqError
from musyq.core.grid import tiles_touching
from musyq.core.scene import RadianceCalibration, Scene
from musyq.core.sensors import endmember_bands

Array = NDArray[np.float64]
MIN_PIXELS = 100
HOMOGENEITY = 0.1  # largest relative 3 x 3 spread of the reference NIR of a pixel used
CLIP_SIGMA = 3.0


@dataclass(frozen=True)
class BandGain:
    """How the target band reads against the reference: ``ratio`` = observed / predicted TOA."""

    band: str
    reference_band: str
    ratio: float
    slope: float
    intercept: float
    r2: float
    rmse: float
    pixels: int
    gain: float | None  # the corrected radiance gain where the target is radiance-calibrated


@dataclass(frozen=True)
class CrossCalibration:
    target: str
    reference: str
    sensor: str
    year: int
    aot550: float
    bands: list[BandGain]

    def table(self) -> dict[str, object]:
        """A calibration table ``--calibration`` takes, with the fit beside it."""
        gains = [b.gain for b in self.bands]
        entry = {"gain": gains, "bias": [0.0] * len(gains)} if all(g is not None for g in gains) else {}
        return {"sensors": {self.sensor: {str(self.year): entry}} if entry else {},
                "crosscal": {"target": self.target, "reference": self.reference, "aot550": self.aot550,
                             "bands": [asdict(b) for b in self.bands]}}


def site_sbaf(reference_surface: Array, reference_sensor: str, reference_bands: tuple[str, ...],
              target_sensor: str, pairs: list[tuple[str, str]]) -> Array:
    """Per pixel and target band, target over paired reference band reflectance of the site's spectrum
    (non-negative vegetation and soil mixture fitted to the reference bands)."""
    members = endmember_bands(reference_sensor, reference_bands)  # (2, bands)
    flat = reference_surface.reshape(len(reference_bands), -1)
    weights, *_ = np.linalg.lstsq(members.T, flat, rcond=None)
    weights = np.clip(weights, 0.0, None)
    target_members = endmember_bands(target_sensor, tuple(t for t, _ in pairs))
    reference_members = endmember_bands(reference_sensor, tuple(r for _, r in pairs))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (target_members.T @ weights) / (reference_members.T @ weights)
    return np.asarray(ratio.reshape((len(pairs), *reference_surface.shape[1:])))


def _fit(observed: Array, predicted: Array) -> tuple[float, float, float, float, float, int]:
    keep = np.isfinite(observed) & np.isfinite(predicted) & (predicted > 0)
    for _ in range(3):
        x, y = predicted[keep], observed[keep]
        ratio = float(np.sum(x * y) / np.sum(x * x))
        residual = observed - ratio * predicted
        spread = float(np.std(residual[keep]))
        keep &= np.abs(residual) <= CLIP_SIGMA * max(spread, 1e-6)
    x, y = predicted[keep], observed[keep]
    if x.size < MIN_PIXELS:
        raise MusyqError(f"only {x.size} homogeneous pixels both scenes see: too few for a cross-calibration")
    ratio = float(np.sum(x * y) / np.sum(x * x))
    slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    r2 = float(1 - np.var(y - (slope * x + intercept)) / np.var(y))
    rmse = float(np.sqrt(np.mean((y - ratio * x) ** 2)))
    return ratio, slope, intercept, r2, rmse, int(x.size)


def cross_calibrate(target: Scene, reference: Scene, resolution: float = 160.0, aot550: float | None = None,
                    dem: Path | None = None) -> CrossCalibration:
    """The target's per-band gains against the reference over the tiles both scenes touch."""
    shared = {t.id: t for t in tiles_touching(target.footprint)}
    tiles = [t for t in tiles_touching(reference.footprint) if t.id in shared]
    if not tiles:
        raise MusyqError(f"{target.product_path} and {reference.product_path} share no tile")
    pairs = [(t.id, r.id) for t, r in pair_bands(target.sensor, reference.sensor)]
    options = ArdOptions(resolution=resolution, atmosphere=AtmosphereOptions(dem=dem))
    observed: list[list[Array]] = [[] for _ in pairs]
    predicted: list[list[Array]] = [[] for _ in pairs]
    aots = []
    for tile in tiles:
        grid = tile.geobox(resolution)
        windows = [covered_window(scene, grid) for scene in (target, reference)]
        if windows[0] is None or windows[1] is None:
            continue
        rows = slice(max(windows[0][0].start, windows[1][0].start), min(windows[0][0].stop, windows[1][0].stop))
        cols = slice(max(windows[0][1].start, windows[1][1].start), min(windows[0][1].stop, windows[1][1].stop))
        if rows.start >= rows.stop or cols.start >= cols.stop:
            continue
        box = grid[rows, cols]
        toa_t, _, valid_t, angles_t = toa_on_tile(target, box, options)
        toa_r, _, valid_r, angles_r = toa_on_tile(reference, box, options)
        valid = valid_t & valid_r
        if valid.sum() < MIN_PIXELS:
            continue
        reference_bands = tuple(s.band for s in reference.reflective_sources)
        elevation = load_elevation(dem, box) if dem is not None else None
        settings = AtmosphereOptions(aot550=aot550, dem=dem)
        surface = correct_tile(load_table(reference.sensor.id), reference_bands, toa_r, angles_r, valid, resolution,
                               settings, elevation=elevation)
        aots.append(float(np.nanmean(surface.aot550[valid])))
        surface_ids = tuple(b.id for b in surface.bands)
        usable_pairs = [(t, r) for t, r in pairs if r in surface_ids]
        nir = next((k for k, b in enumerate(surface.bands) if b.common_name in ("nir", "nir08")), None)
        homogeneous = valid.copy()
        if nir is not None:
            values = np.where(valid, toa_r[[s.band.id for s in reference.reflective_sources].index(
                surface.bands[nir].id)], np.nan)
            mean = ndimage.uniform_filter(np.nan_to_num(values), 3)
            square = ndimage.uniform_filter(np.nan_to_num(values) ** 2, 3)
            with np.errstate(invalid="ignore", divide="ignore"):
                spread = np.sqrt(np.maximum(square - mean**2, 0)) / mean
            homogeneous &= ndimage.binary_erosion(valid) & (spread < HOMOGENEITY)
        sbaf = site_sbaf(surface.reflectance.astype(np.float64), reference.sensor.id, surface_ids, target.sensor.id,
                         usable_pairs)
        heights = np.zeros(valid.shape) if elevation is None else np.clip(np.nan_to_num(elevation), 0, None) / 1000
        atmosphere = Atmosphere(np.nan_to_num(surface.aot550, nan=float(np.nanmean(surface.aot550))),
                                surface.water_vapour, settings.ozone, settings.aerosol_model, heights)
        sun_az_t, sun_t, view_az_t, view_t = (a.astype(np.float64) for a in angles_t)
        sun_az_r, sun_r, view_az_r, view_r = (a.astype(np.float64) for a in angles_r)
        table = load_table(target.sensor.id)
        for k, (target_band, reference_band) in enumerate(pairs):
            if (target_band, reference_band) not in usable_pairs:
                continue
            j = usable_pairs.index((target_band, reference_band))
            rho = surface.reflectance[surface_ids.index(reference_band)].astype(np.float64) * sbaf[j]
            shape = roy_coefficients(target.sensor.band(target_band))
            if shape is not None:
                rho = rho * brdf(shape, sun_t, view_t, view_az_t - sun_az_t) / brdf(shape, sun_r, view_r,
                                                                                      view_az_r - sun_az_r)
            coef = coefficients(table, target_band, atmosphere, sun_t, view_t, sun_az_t - view_az_t)
            prediction = toa_reflectance(rho, coef)
            band_index = [s.band.id for s in target.reflective_sources].index(target_band)
            observed[k].append(np.where(homogeneous, toa_t[band_index], np.nan).ravel())
            predicted[k].append(np.where(homogeneous, prediction, np.nan).ravel())
    if not aots:
        raise MusyqError(f"{target.product_path} and {reference.product_path} overlap by too little")
    results = []
    for k, (target_band, reference_band) in enumerate(pairs):
        if not observed[k]:
            continue
        ratio, slope, intercept, r2, rmse, count = _fit(np.concatenate(observed[k]), np.concatenate(predicted[k]))
        calibration = target.source(target_band).calibration
        gain = calibration.gain / ratio if isinstance(calibration, RadianceCalibration) else None
        results.append(BandGain(target_band, reference_band, round(ratio, 5), round(slope, 5), round(intercept, 5),
                                round(r2, 4), round(rmse, 5), count, None if gain is None else round(gain, 6)))
    return CrossCalibration(target.product_id, reference.product_id, target.sensor.id, target.acquired.year,
                            round(float(np.mean(aots)), 4), results)
