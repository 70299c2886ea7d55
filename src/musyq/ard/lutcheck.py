"""Round trip through 6S: simulate TOA from a known surface with band-integrated 6S, invert with the tables.

This measures everything between 6S and a corrected pixel at once: the spectral and angular
interpolation of the scattering table, the gas curves, and the coupling of the two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from musyq.ard import sixs
from musyq.ard.atmcor import Atmosphere, coefficients, surface_reflectance
from musyq.ard.lut import RECORD_FILE, BandTable, interpolation_rms, load_table, path_transmittance, table_folder
from musyq.core.sensors import spectral_response

Array = NDArray[np.float64]


@dataclass(frozen=True)
class BandErrors:
    """Retrieval errors of one band, split at AOD 0.5 where the tolerance changes."""

    count: int
    mean: float
    low_aerosol: Array
    high_aerosol: Array

    @staticmethod
    def worst(errors: Array) -> float:
        return float(np.max(np.abs(errors))) if errors.size else float("nan")


@dataclass(frozen=True)
class RoundTrip:
    """One row per simulated (case, band)."""

    band: NDArray[np.str_]
    aot550: Array
    surface: Array
    retrieved: Array

    @property
    def error(self) -> Array:
        return self.retrieved - self.surface

    def by_band(self) -> dict[str, BandErrors]:
        report = {}
        for band in dict.fromkeys(self.band.tolist()):
            rows = self.band == band
            errors = self.error[rows]
            high = self.aot550[rows] > 0.5
            report[str(band)] = BandErrors(int(rows.sum()), float(errors.mean()), errors[~high], errors[high])
        return report


def random_cases(
    sensor_id: str, count: int, seed: int, max_elevation_km: float = 0.0, bands: tuple[str, ...] | None = None,
    max_view_zenith: float = 12.0,
) -> list[tuple[str, sixs.Case]]:
    """(band, case) pairs spread over the table's bands and the ranges the correction must cover."""
    rng = np.random.default_rng(seed)
    table = load_table(sensor_id)
    srf = spectral_response(sensor_id)
    surface_bands = list(bands) if bands else [b for b in table.bands if b in table.surface_bands]
    pairs = []
    for n in range(count):
        band = surface_bands[n % len(surface_bands)]
        case = sixs.Case(
            sun_zenith=float(rng.uniform(0, 70)), view_zenith=float(rng.uniform(0, max_view_zenith)),
            relative_azimuth=float(rng.uniform(0, 180)), aot550=float(rng.uniform(0, 0.8)),
            aerosol_model=str(rng.choice(table.aerosol_models)), water_vapour=float(rng.uniform(0.2, 5.0)),
            ozone=float(rng.uniform(0.2, 0.5)), surface_reflectance=float(rng.uniform(0, 0.6)),
            elevation_km=float(rng.uniform(0, max_elevation_km)),
            response=sixs.band_response(srf.wavelength_nm, srf.of(band)),
        )
        pairs.append((band, case))
    return pairs


def vapour_above_target(table: BandTable, band: str, case: sixs.Case, result: sixs.Result) -> float:
    """The vapour column musyq should be given for a 6S case above sea level.

    6S takes the vapour as a sea-level column and removes what lies below the target; musyq takes
    the column above the target. The equivalent is the column whose water-vapour transmittance, on
    the case's two-way path at sea level, is the one 6S computed above the target.
    """
    if case.elevation_km <= 0:
        return case.water_vapour
    target = result.gas_transmittance["water"][2]
    air_mass = 1 / np.cos(np.radians(case.sun_zenith)) + 1 / np.cos(np.radians(case.view_zenith))
    curve = table.gas_water[table.index(band)]
    low, high = 0.0, case.water_vapour
    for _ in range(40):  # transmittance falls with the column: bisect
        middle = 0.5 * (low + high)
        if float(path_transmittance(curve, middle * air_mass)) > target:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def round_trip(
    sensor_id: str, count: int, seed: int = 1, workers: int = 2, max_elevation_km: float = 0.0,
    bands: tuple[str, ...] | None = None, max_view_zenith: float = 12.0,
) -> RoundTrip:
    """Simulate ``count`` random cases with 6S and invert each with the packaged table.

    Above sea level musyq is given the vapour column above the target that matches 6S's
    (``vapour_above_target``).
    """
    pairs = random_cases(sensor_id, count, seed, max_elevation_km, bands, max_view_zenith)
    results = sixs.run_many([case for _, case in pairs], workers)
    table = load_table(sensor_id)
    retrieved = []
    for (band, case), result in zip(pairs, results, strict=True):
        vapour = vapour_above_target(table, band, case, result)
        atmosphere = Atmosphere(case.aot550, vapour, case.ozone, case.aerosol_model, case.elevation_km)
        coef = coefficients(table, band, atmosphere, case.sun_zenith, case.view_zenith, case.relative_azimuth)
        retrieved.append(float(surface_reflectance(result.apparent_reflectance, coef)))
    return RoundTrip(
        band=np.array([band for band, _ in pairs]),
        aot550=np.array([case.aot550 for _, case in pairs]),
        surface=np.array([case.surface_reflectance for _, case in pairs]),
        retrieved=np.array(retrieved),
    )


def record_round_trip(sensor_id: str, report: RoundTrip, max_view_zenith: float, folder: Path | None = None) -> Path:
    """Keep a sensor's round-trip RMS error beside its table: it is the table-interpolation term of the SR
    uncertainty."""
    path = (folder or table_folder()) / RECORD_FILE
    records = json.loads(path.read_text()) if path.exists() else {}
    error = report.error
    records[sensor_id] = {"rms": round(float(np.sqrt(np.mean(error**2))), 6), "cases": int(error.size),
                          "max_view_zenith": max_view_zenith}
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(dict(sorted(records.items())), indent=1) + "\n")
    partial.replace(path)
    interpolation_rms.cache_clear()
    return path

