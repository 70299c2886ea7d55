"""Atmospheric lookup tables from 6S, per sensor band.

The build has three parts, chosen to keep the number of 6S runs near 26,000:

* **Scattering** (path reflectance, its Rayleigh part, diffuse + direct transmittance, spherical
  albedo) is smooth in wavelength. 6S itself computes it at fixed reference wavelengths and
  interpolates log-log in between, so the table holds monochromatic runs at eleven of those
  wavelengths over aerosol optical depth, sun and view zenith and relative azimuth, for each
  aerosol model. Path reflectance is reciprocal in sun and view zenith, which halves the runs.
  It does not depend on the sensor and is built once.
* **Aerosol single scattering** carries the sharp features of the aerosol phase function (the
  maritime rainbow near 145 degrees, the glory at 180) that fall between zenith nodes. The table
  holds, along the scattering angle, the reflectance of a thin aerosol layer scaled to unit optical
  depth at 550 nm and overhead sun and view: single-scattering albedo times relative extinction
  times the phase function as 6S resolves it. Correction interpolates the path reflectance less
  this single scattering and adds it back at each pixel's own scattering angle.
* **Gaseous transmittance** varies line by line, so it is taken from band-integrated 6S runs per
  band, as a function of absorber path (amount times air mass): water vapour, ozone, and the
  well-mixed gases as a function of air mass alone.

A band table is the scattering table integrated over the band's response times the solar
spectrum, plus its gas curves. Correction then follows 6S's own coupling of the two::

    rho_toa = T_og [rho_R + (rho_path - rho_R) T_w(u/2) + T_w(u) T_down T_up rho_s / (1 - S rho_s)]

with T_og the ozone and mixed-gas transmittance and T_w the water-vapour transmittance along the
sun-to-ground-to-sensor path (half the vapour is mixed with the aerosol).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from musyq.ard import sixs
from musyq.core.errors import MusyqError, SensorError
from musyq.core.sensors import Sensor, get_sensor, solar_spectrum, spectral_response

AEROSOL_MODELS = ("continental", "maritime")
WAVELENGTHS_UM = (0.400, 0.443, 0.488, 0.550, 0.670, 0.760, 0.860, 1.240, 1.650, 1.950, 2.250)
AOT550 = (0.0, 0.25, 0.45, 0.7, 1.0, 1.5)
ZENITH = (0.0, 12.0, 24.0, 36.0, 47.0, 57.0, 66.0, 74.0)
AZIMUTH = (0.0, 45.0, 90.0, 135.0, 180.0)
SCATTERING_ANGLE = tuple(float(a) for a in range(30, 181))  # sun and view up to 75 degrees
THIN_AOT = 0.02  # aerosol optical depth of the single-scattering runs
# Band-run design for the gas curves: one-way air masses and absorber paths per run; each run
# also yields the two-way values at twice the path.
GAS_AIR_MASS = (1.0, 1.15, 1.35, 1.6, 1.9, 2.3, 2.8, 3.5)
WATER_PATH = tuple(0.03 * 2.5**k for k in range(8))  # g cm-2
OZONE_PATH = tuple(0.05 * 1.6**k for k in range(8))  # cm-atm
MIXED_GASES = ("co2", "oxyg", "no2", "ch4", "co")
# Targets above sea level: a molecular atmosphere at pressure ratio p scatters at wavelength l as
# the sea-level one does at l * p**(-1/RAYLEIGH_EXPONENT), since its optical depth goes as p * l**-4.08
# and its phase function does not depend on wavelength. The aerosol-free slice of the table read at
# those wavelengths gives the molecular path reflectance at altitude without further 6S runs.
PRESSURE_RATIO = (1.0, 0.85, 0.7, 0.55, 0.45)
ELEVATION_KM = (2.0, 4.0, 6.0)  # heights with their own diffuse transmittance and spherical albedo
RAYLEIGH_EXPONENT = 4.08
REFERENCE_OFFSET_UM = 1e-5
NO_SURFACE_BANDS = frozenset({"wv", "cirrus"})  # absorption bands: no surface reflectance

Array = NDArray[np.float64]


def run_at_reference_wavelengths(
    cases: list[sixs.Case], workers: int, tick: Callable[[], None] | None
) -> list[sixs.Result]:
    """Monochromatic 6S runs at 6S's own reference wavelengths, a third faster than asking for them.

    6S computes scattering at the reference wavelengths around the one asked for and interpolates:
    exactly on a reference wavelength it computes three of them, 10 pm below it two, with the same
    printed result (checked on every node of the tables). Below some references (0.412, 0.59,
    0.694 um) 6S returns NaN instead; those cases run again on the reference itself.
    """
    below = [replace(c, wavelength_um=round(float(c.wavelength_um or 0.0) - REFERENCE_OFFSET_UM, 6)) for c in cases]
    results = sixs.run_many(below, workers, tick)
    failed = [n for n, r in enumerate(results) if not np.isfinite(r.path_reflectance)]
    for n, result in zip(failed, sixs.run_many([cases[n] for n in failed], workers), strict=True):
        results[n] = result
    return results


def _geometries() -> list[tuple[int, int, int]]:
    """(sun, view, azimuth) node indices with sun >= view; at nadir view azimuth is irrelevant."""
    nodes = []
    for i in range(len(ZENITH)):
        for j in range(i + 1):
            for k in range(len(AZIMUTH) if j > 0 else 1):
                nodes.append((i, j, k))
    return nodes


def _cached_runs(
    cache_file: Path, cases: list[sixs.Case], row: Callable[[sixs.Result, sixs.Case], tuple[float, ...]],
    workers: int, tick: Callable[[], None] | None,
) -> Array:
    """``row`` of each case's 6S result.

    Finished runs are kept in ``cache_file`` with the cases' angles and aerosol, so a rerun, or a build
    on a changed grid, runs only the cases it has not seen.
    """
    keys = [tuple(round(v, 6) for v in (c.sun_zenith, c.view_zenith, c.relative_azimuth, c.aot550)) for c in cases]
    known: dict[tuple[float, ...], Array] = {}
    if cache_file.exists():
        with np.load(cache_file) as cached:
            if "cases" in cached.files:
                known = {tuple(k): r for k, r in zip(cached["cases"].round(6).tolist(), cached["rows"], strict=True)}
    missing = [n for n, key in enumerate(keys) if key not in known]
    if tick is not None:
        for _ in range(len(cases) - len(missing)):
            tick()
    if missing:
        results = run_at_reference_wavelengths([cases[n] for n in missing], workers, tick)
        for n, result in zip(missing, results, strict=True):
            known[keys[n]] = np.array(row(result, cases[n]))
        partial = cache_file.with_suffix(".partial.npz")
        np.savez(partial, cases=np.array(list(known)), rows=np.array(list(known.values())))
        os.replace(partial, cache_file)
    return np.array([known[key] for key in keys], dtype=np.float64)


def _phase_rows(
    cache_file: Path, model: str, wavelength: float, workers: int, tick: Callable[[], None] | None
) -> Array:
    """(single-scattering phase product, extinction relative to 550 nm) along ``SCATTERING_ANGLE``.

    Sun and view share a zenith, on opposite sides, so the scattering angle is 180 minus twice it.
    """
    cases = [sixs.Case((180.0 - angle) / 2, (180.0 - angle) / 2, 180.0, THIN_AOT, model, wavelength_um=wavelength)
             for angle in SCATTERING_ANGLE]

    def row(result: sixs.Result, case: sixs.Case) -> tuple[float, float]:
        mu = float(np.cos(np.radians(case.sun_zenith)))
        return result.aerosol_reflectance * 4 * mu * mu / THIN_AOT, result.aerosol_optical_depth / THIN_AOT

    return _cached_runs(cache_file, cases, row, workers, tick)


def scattering_angle(sun_zenith: ArrayLike, view_zenith: ArrayLike, relative_azimuth: ArrayLike) -> Array:
    """Degrees; 6S's relative azimuth 0 puts the sun behind the sensor (backscatter)."""
    sun, view, azimuth = (np.radians(np.asarray(v, dtype=np.float64)) for v in (sun_zenith, view_zenith,
                                                                              relative_azimuth))
    cosine = -np.cos(sun) * np.cos(view) - np.sin(sun) * np.sin(view) * np.cos(azimuth)
    return np.asarray(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def aerosol_single_scattering(
    angles: Array, phase: Array, extinction_ratio: float, aot550: ArrayLike, sun_zenith: ArrayLike,
    view_zenith: ArrayLike, relative_azimuth: ArrayLike,
) -> Array:
    """Single-scattering reflectance of a homogeneous aerosol layer, omega P (1 - e^(-tau M)) / 4 (mu_s + mu_v).

    ``phase`` is the table's phase product (omega times relative extinction times P) at the
    scattering ``angles``.
    """
    mu_s, mu_v = np.cos(np.radians(sun_zenith)), np.cos(np.radians(view_zenith))
    product = np.interp(scattering_angle(sun_zenith, view_zenith, relative_azimuth), angles, phase)
    depth = extinction_ratio * np.asarray(aot550) * (1 / mu_s + 1 / mu_v)
    return np.asarray(product / extinction_ratio * -np.expm1(-depth) / (4 * (mu_s + mu_v)))


@dataclass(frozen=True)
class ScatteringTable:
    """Monochromatic 6S scattering quantities at the reference wavelengths.

    ``path`` and ``rayleigh``: (model, wavelength, aot, sun, view, azimuth); ``transmittance``:
    (model, wavelength, aot, zenith), one way; ``spherical_albedo``: (model, wavelength, aot).
    """

    path: Array
    rayleigh: Array
    transmittance: Array
    spherical_albedo: Array
    elevated_transmittance: Array  # (model, wavelength, elevation, aot, zenith)
    elevated_spherical_albedo: Array  # (model, wavelength, elevation, aot)
    aerosol_phase: Array  # (model, wavelength, scattering angle): see ``_phase_rows``
    extinction_ratio: Array  # (model, wavelength)


def _elevated_rows(
    cache_file: Path, model: str, wavelength: float, elevation: float, workers: int, tick: Callable[[], None] | None
) -> Array:
    """(T_down, spherical albedo) per (aot, zenith) for a target above sea level: the diffuse
    quantities, where aerosol and molecules do not add up, from 6S itself."""
    cases = [sixs.Case(zenith, zenith, 0.0, aot, model, elevation_km=elevation, wavelength_um=wavelength)
             for aot in AOT550 for zenith in ZENITH]
    rows = _cached_runs(cache_file, cases, lambda r, _: (r.scattering_transmittance[0], r.spherical_albedo),
                        workers, tick)
    return rows.reshape(len(AOT550), len(ZENITH), 2)


def _slice_rows(
    cache_file: Path, model: str, wavelength: float, aot: float, workers: int, tick: Callable[[], None] | None
) -> Array:
    """(path, rayleigh, T_down, spherical albedo) for every geometry of one slice."""
    cases = [sixs.Case(ZENITH[i], ZENITH[j], AZIMUTH[k], aot, model, wavelength_um=wavelength)
             for i, j, k in _geometries()]
    return _cached_runs(cache_file, cases, lambda r, _: (r.path_reflectance, r.rayleigh_reflectance,
                                                         r.scattering_transmittance[0], r.spherical_albedo),
                        workers, tick)


def build_scattering(
    cache_dir: Path, workers: int = 2, tick: Callable[[], None] | None = None
) -> ScatteringTable:
    """Run (or resume) the monochromatic part; every finished run is kept in ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    shape = (len(AEROSOL_MODELS), len(WAVELENGTHS_UM), len(AOT550))
    nz, na = len(ZENITH), len(AZIMUTH)
    path = np.zeros(shape + (nz, nz, na))
    rayleigh = np.zeros_like(path)
    transmittance = np.zeros(shape + (nz,))
    albedo = np.zeros(shape)
    geometries = _geometries()
    for m, model in enumerate(AEROSOL_MODELS):
        for w, wavelength in enumerate(WAVELENGTHS_UM):
            for a, aot in enumerate(AOT550):
                cache_file = cache_dir / f"{model}_{wavelength:.3f}_{aot:.2f}.npz"
                rows = _slice_rows(cache_file, model, wavelength, aot, workers, tick)
                for (i, j, k), row in zip(geometries, rows, strict=True):
                    ks = range(na) if j == 0 else (k,)
                    for kk in ks:
                        path[m, w, a, i, j, kk] = path[m, w, a, j, i, kk] = row[0]
                        rayleigh[m, w, a, i, j, kk] = rayleigh[m, w, a, j, i, kk] = row[1]
                    if j == 0:
                        transmittance[m, w, a, i] = row[2]
                    albedo[m, w, a] = row[3]
    elevated = np.zeros((len(AEROSOL_MODELS), len(WAVELENGTHS_UM), len(ELEVATION_KM), len(AOT550), nz, 2))
    for m, model in enumerate(AEROSOL_MODELS):
        for w, wavelength in enumerate(WAVELENGTHS_UM):
            for e, elevation in enumerate(ELEVATION_KM):
                cache_file = cache_dir / f"elevated_{model}_{wavelength:.3f}_{elevation:.1f}.npz"
                elevated[m, w, e] = _elevated_rows(cache_file, model, wavelength, elevation, workers, tick)
    phase = np.zeros((len(AEROSOL_MODELS), len(WAVELENGTHS_UM), len(SCATTERING_ANGLE), 2))
    for m, model in enumerate(AEROSOL_MODELS):
        for w, wavelength in enumerate(WAVELENGTHS_UM):
            phase[m, w] = _phase_rows(cache_dir / f"phase_{model}_{wavelength:.3f}.npz", model, wavelength, workers, tick)
    return ScatteringTable(path, rayleigh, transmittance, albedo, elevated[..., 0], elevated[..., 1].mean(axis=-1),
                           phase[..., 0], phase[..., 1].mean(axis=-1))


SCATTERING_FILE = "scattering.npz"


def _grid() -> dict[str, Array]:
    return {"aerosol_models": np.array(AEROSOL_MODELS), "wavelengths_um": np.array(WAVELENGTHS_UM),
            "aot550": np.array(AOT550), "zenith": np.array(ZENITH), "azimuth": np.array(AZIMUTH),
            "pressure_ratio": np.array(PRESSURE_RATIO), "elevation_km": np.array(ELEVATION_KM),
            "scattering_angle": np.array(SCATTERING_ANGLE)}


def save_scattering(table: ScatteringTable, folder: Path) -> None:
    """Keep the sensor-independent table beside the band tables, so a new sensor needs only its gas runs."""
    arrays = {"path": table.path, "rayleigh": table.rayleigh, "transmittance": table.transmittance,
              "spherical_albedo": table.spherical_albedo, "elevated_transmittance": table.elevated_transmittance,
              "elevated_spherical_albedo": table.elevated_spherical_albedo, "aerosol_phase": table.aerosol_phase,
              "extinction_ratio": table.extinction_ratio}
    _save(folder / SCATTERING_FILE, _grid() | {k: v.astype(np.float32) for k, v in arrays.items()})


def load_scattering(folder: Path) -> ScatteringTable | None:
    """The saved scattering table, if there is one on the current grid."""
    path = folder / SCATTERING_FILE
    if not path.exists():
        return None
    with np.load(path) as data:
        if any(k not in data.files or not np.array_equal(data[k], v) for k, v in _grid().items()):
            return None
        return ScatteringTable(*(data[k].astype(np.float64) for k in (
            "path", "rayleigh", "transmittance", "spherical_albedo", "elevated_transmittance",
            "elevated_spherical_albedo", "aerosol_phase", "extinction_ratio")))


def _save(path: Path, arrays: dict[str, Array]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".partial", delete=False) as handle:
        np.savez_compressed(handle, **cast(dict[str, Any], arrays))
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


def scattering_run_count() -> int:
    slices = len(AEROSOL_MODELS) * len(WAVELENGTHS_UM)
    return slices * (len(AOT550) * (len(_geometries()) + len(ELEVATION_KM) * len(ZENITH)) + len(SCATTERING_ANGLE))


def _loglog_weights(wavelength_um: Array) -> tuple[NDArray[np.intp], Array]:
    """Bracketing reference wavelengths and log-log fractions, as 6S interpolates."""
    nodes = np.log(np.array(WAVELENGTHS_UM))
    x = np.log(wavelength_um)
    lower = np.clip(np.searchsorted(nodes, x) - 1, 0, len(nodes) - 2)
    fraction = (x - nodes[lower]) / (nodes[lower + 1] - nodes[lower])
    return lower, fraction


def band_integrate(values: Array, wavelength_nm: Array, weight: Array, stretch: float = 1.0) -> Array:
    """Weighted band mean of a quantity tabulated on the last axis at ``WAVELENGTHS_UM``.

    ``stretch`` reads the table at ``stretch`` times each wavelength instead (see ``RAYLEIGH_EXPONENT``).
    """
    keep = weight > 0
    lower, fraction = _loglog_weights(wavelength_nm[keep] * stretch / 1000.0)
    logs = np.log(np.maximum(values, 1e-12))
    spectral = np.exp(logs[..., lower] * (1 - fraction) + logs[..., lower + 1] * fraction)
    w = weight[keep]
    return np.asarray(spectral @ w / w.sum(), dtype=np.float64)


@dataclass(frozen=True)
class GasCurves:
    """Band-integrated transmittance against absorber path: ``(path, transmittance)`` pairs."""

    water: tuple[Array, Array]
    ozone: tuple[Array, Array]
    mixed: tuple[Array, Array]  # against air mass


def _curve(path: list[float], transmittance: list[float]) -> tuple[Array, Array]:
    order = np.argsort(path)
    p = np.concatenate([[0.0], np.asarray(path)[order]])
    t = np.concatenate([[1.0], np.asarray(transmittance)[order]])
    return p, t


def gas_cases(response: tuple[float, tuple[float, ...]]) -> list[sixs.Case]:
    cases = []
    for air_mass, water, ozone in zip(GAS_AIR_MASS, WATER_PATH, OZONE_PATH, strict=True):
        zenith = float(np.degrees(np.arccos(1.0 / air_mass)))
        cases.append(
            sixs.Case(zenith, zenith, 0.0, 0.0, water_vapour=water / air_mass, ozone=ozone / air_mass, response=response)
        )
    return cases


def gas_curves(results: list[sixs.Result]) -> GasCurves:
    water_p, water_t, ozone_p, ozone_t, mixed_m, mixed_t = [], [], [], [], [], []
    for air_mass, water, ozone, result in zip(GAS_AIR_MASS, WATER_PATH, OZONE_PATH, results, strict=True):
        gas = result.gas_transmittance
        for scale, column in ((1.0, 0), (2.0, 2)):
            water_p.append(water * scale)
            water_t.append(gas["water"][column])
            ozone_p.append(ozone * scale)
            ozone_t.append(gas["ozone"][column])
            mixed_m.append(air_mass * scale)
            mixed_t.append(float(np.prod([gas[g][column] for g in MIXED_GASES])))
    return GasCurves(_curve(water_p, water_t), _curve(ozone_p, ozone_t), _curve(mixed_m, mixed_t))


def path_transmittance(curve: tuple[Array, Array], path: ArrayLike) -> Array:
    """Transmittance at absorber paths.

    Band optical depth grows as a power of the path (strong lines saturate), so it is interpolated
    log-log between samples, and linearly from zero below the first one.
    """
    p, t = curve
    depth = -np.log(np.maximum(t, 1e-9))
    x = np.asarray(path, dtype=np.float64)
    linear = np.interp(x, p, depth)
    if not (depth[1:] > 0).all():
        return np.asarray(np.exp(-linear), dtype=np.float64)
    with np.errstate(divide="ignore"):
        loglog = np.exp(np.interp(np.log(np.maximum(x, p[1])), np.log(p[1:]), np.log(depth[1:])))
    return np.asarray(np.exp(-np.where(x > p[1], loglog, linear)), dtype=np.float64)


def surface_bands(sensor: Sensor) -> tuple[str, ...]:
    """Bands that get a surface reflectance: reflective bands outside absorption features."""
    return tuple(b.id for b in sensor.reflective_bands if b.common_name not in NO_SURFACE_BANDS)


def build_gas_curves(
    sensor_id: str, cache_dir: Path, workers: int = 2, tick: Callable[[], None] | None = None
) -> dict[str, Array]:
    """Gas curves of every reflective band, from band-integrated 6S runs (kept in ``cache_dir``)."""
    sensor = get_sensor(sensor_id)
    cached = cache_dir / f"gas_{sensor.id}.npz"
    bands = tuple(b.id for b in sensor.reflective_bands)
    if cached.exists():
        with np.load(cached) as data:
            if tuple(data["bands"]) == bands:
                return {k: data[k] for k in data.files}
    srf = spectral_response(sensor.id)
    responses = [sixs.band_response(srf.wavelength_nm, srf.of(b)) for b in bands]
    results = sixs.run_many([case for response in responses for case in gas_cases(response)], workers, tick)
    per_band = len(GAS_AIR_MASS)
    curves = [gas_curves(results[n * per_band : (n + 1) * per_band]) for n in range(len(bands))]
    gas = {f"gas_{name}": np.stack([np.stack(getattr(c, name)) for c in curves]) for name in ("water", "ozone", "mixed")}
    gas["bands"] = np.array(bands)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial.npz")
    np.savez(partial, **cast(dict[str, Any], gas))
    os.replace(partial, cached)
    return gas


def build_band_table(sensor_id: str, scattering: ScatteringTable, gas: dict[str, Array]) -> dict[str, Array]:
    """Integrate the scattering table over each band's response times the solar spectrum."""
    sensor = get_sensor(sensor_id)
    srf = spectral_response(sensor.id)
    solar_wl, solar = solar_spectrum()
    irradiance = np.interp(srf.wavelength_nm, solar_wl, solar)
    quantities = {
        "path": np.moveaxis(scattering.path, 1, -1),
        "rayleigh": np.moveaxis(scattering.rayleigh, 1, -1),
        "transmittance": np.moveaxis(scattering.transmittance, 1, -1),
        "spherical_albedo": np.moveaxis(scattering.spherical_albedo, 1, -1),
        "aerosol_phase": np.moveaxis(scattering.aerosol_phase, 1, -1),
        "extinction_ratio": scattering.extinction_ratio,
    }
    table: dict[str, Array] = {}
    weights = [srf.of(str(b)) * irradiance for b in gas["bands"]]
    for name, values in quantities.items():
        per_band = [band_integrate(values, srf.wavelength_nm, w) for w in weights]
        table[name] = np.stack(per_band).astype(np.float32)
    # the molecular path reflectance (model 0, no aerosol) at each pressure ratio
    molecular = quantities["path"][0, 0]
    table["molecular_path"] = np.stack([
        np.stack([band_integrate(molecular, srf.wavelength_nm, w, ratio ** (-1 / RAYLEIGH_EXPONENT))
                  for ratio in PRESSURE_RATIO]) for w in weights]).astype(np.float32)
    for name in ("elevated_transmittance", "elevated_spherical_albedo"):
        values = np.moveaxis(getattr(scattering, name), 1, -1)
        table[name] = np.stack([band_integrate(values, srf.wavelength_nm, w) for w in weights]).astype(np.float32)
    table.update(gas)
    table["surface_bands"] = np.array(surface_bands(sensor))
    return table


def save_table(table: dict[str, Array], path: Path) -> None:
    """Write a band table atomically, with its grid, as compressed npz."""
    grid = _grid()
    del grid["wavelengths_um"]
    _save(path, grid | table)


@dataclass(frozen=True)
class BandTable:
    """The packaged lookup table of one sensor, ready to interpolate."""

    sensor_id: str
    bands: tuple[str, ...]
    surface_bands: tuple[str, ...]
    aerosol_models: tuple[str, ...]
    aot550: Array
    zenith: Array
    azimuth: Array
    path: Array  # (band, model, aot, sun, view, azimuth)
    rayleigh: Array
    transmittance: Array  # (band, model, aot, zenith)
    spherical_albedo: Array  # (band, model, aot)
    gas_water: Array  # (band, 2, samples)
    gas_ozone: Array
    gas_mixed: Array
    pressure_ratio: Array
    molecular_path: Array  # (band, pressure, sun, view, azimuth): no aerosol
    elevation_km: Array
    elevated_transmittance: Array  # (band, model, elevation, aot, zenith)
    elevated_spherical_albedo: Array  # (band, model, elevation, aot)
    scattering_angle: Array
    aerosol_phase: Array  # (band, model, scattering angle)
    extinction_ratio: Array  # (band, model)
    smooth_path: Array  # path less the aerosol's single scattering: what the correction interpolates

    def single_scattering(
        self, b: int, m: int, aot550: ArrayLike, sun_zenith: ArrayLike, view_zenith: ArrayLike,
        relative_azimuth: ArrayLike,
    ) -> Array:
        """The single scattering the correction adds back, inside the table's range like the rest of the path."""
        aot = np.clip(aot550, self.aot550[0], self.aot550[-1])
        sun, view = (np.minimum(z, self.zenith[-1]) for z in (sun_zenith, view_zenith))
        return aerosol_single_scattering(self.scattering_angle, self.aerosol_phase[b, m],
                                         float(self.extinction_ratio[b, m]), aot, sun, view, relative_azimuth)

    def index(self, band: str) -> int:
        try:
            return self.bands.index(band)
        except ValueError:
            raise SensorError(f"{self.sensor_id} has no atmospheric table for band {band!r}") from None

    def model(self, name: str) -> int:
        if name not in self.aerosol_models:
            raise MusyqError(f"unknown aerosol model {name!r}; tables exist for {', '.join(self.aerosol_models)}")
        return self.aerosol_models.index(name)


def table_folder() -> Path:
    """Where the tables live: ``$MUSYQ_LUT_DIR``, else the package data."""
    if os.environ.get("MUSYQ_LUT_DIR"):
        return Path(os.environ["MUSYQ_LUT_DIR"])
    return Path(str(resources.files("musyq").joinpath("data", "lut")))


RECORD_FILE = "roundtrip.json"  # written by ``musyq lut check --record``
UNRECORDED_RMS = 0.001  # for a sensor whose table was never checked: the order the checked tables show


@cache
def interpolation_rms(sensor_id: str) -> float:
    """The recorded round-trip RMS error of a sensor's table (reflectance)."""
    path = table_folder() / RECORD_FILE
    records = json.loads(path.read_text()) if path.exists() else {}
    return float(records.get(sensor_id, {}).get("rms", UNRECORDED_RMS))


def table_path(sensor_id: str, folder: Path | None = None) -> Path:
    return (folder or table_folder()) / f"{sensor_id}.npz"


def has_table(sensor_id: str) -> bool:
    return table_path(get_sensor(sensor_id).id).exists()


@cache
def load_table(sensor_id: str, folder: Path | None = None) -> BandTable:
    """The band table of a sensor, from the package (or ``folder``)."""
    sensor = get_sensor(sensor_id)
    path = table_path(sensor.id, folder)
    if not path.exists():
        raise MusyqError(f"no atmospheric lookup table for {sensor.id}; build it with: musyq lut build --sensor {sensor.id}")
    with np.load(io.BytesIO(path.read_bytes())) as data:
        if not np.allclose(data["azimuth"], 180.0 - data["azimuth"][::-1]):
            raise MusyqError(f"{path}: the azimuth grid must be symmetric about 90 degrees")
        if "aerosol_phase" not in data.files:
            raise MusyqError(f"{path} predates this version of musyq; rebuild it with: musyq lut build "
                             f"--sensor {sensor.id} --rebuild-scattering")
        path_reflectance = data["path"].astype(np.float64)
        phase, ratio = data["aerosol_phase"].astype(np.float64), data["extinction_ratio"].astype(np.float64)
        nodes = np.meshgrid(data["aot550"], data["zenith"], data["zenith"], data["azimuth"], indexing="ij")
        angles = data["scattering_angle"].astype(np.float64)
        single = np.array([[aerosol_single_scattering(angles, phase[b, m], ratio[b, m], *nodes)
                            for m in range(phase.shape[1])] for b in range(phase.shape[0])])
        return BandTable(
            sensor_id=sensor.id,
            bands=tuple(str(b) for b in data["bands"]),
            surface_bands=tuple(str(b) for b in data["surface_bands"]),
            aerosol_models=tuple(str(m) for m in data["aerosol_models"]),
            aot550=data["aot550"].astype(np.float64),
            zenith=data["zenith"].astype(np.float64),
            azimuth=data["azimuth"].astype(np.float64),
            path=path_reflectance,
            rayleigh=data["rayleigh"].astype(np.float64),
            transmittance=data["transmittance"].astype(np.float64),
            spherical_albedo=data["spherical_albedo"].astype(np.float64),
            gas_water=data["gas_water"],
            gas_ozone=data["gas_ozone"],
            gas_mixed=data["gas_mixed"],
            pressure_ratio=data["pressure_ratio"].astype(np.float64),
            molecular_path=data["molecular_path"].astype(np.float64),
            elevation_km=data["elevation_km"].astype(np.float64),
            elevated_transmittance=data["elevated_transmittance"].astype(np.float64),
            elevated_spherical_albedo=data["elevated_spherical_albedo"].astype(np.float64),
            scattering_angle=angles,
            aerosol_phase=phase,
            extinction_ratio=ratio,
            smooth_path=path_reflectance - single,
        )

