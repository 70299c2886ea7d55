"""Sensors described as data: one JSON file per sensor, loaded into frozen dataclasses.

A new sensor is a new file in ``musyq/data/sensors`` (and optionally its spectral response table in
``musyq/data/srf``), never a new class or branch in the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from musyq.core.errors import SensorError

BandKind = Literal["reflectance", "thermal"]

# Names users and product metadata use for a sensor, mapped to the sensor file id.
ALIASES = {
    "S2A": "S2A_MSI", "SENTINEL-2A": "S2A_MSI",
    "S2B": "S2B_MSI", "SENTINEL-2B": "S2B_MSI",
    "S2C": "S2C_MSI", "SENTINEL-2C": "S2C_MSI",
    "LC08": "L8_OLI", "LO08": "L8_OLI", "LANDSAT_8": "L8_OLI", "LANDSAT-8": "L8_OLI", "L8": "L8_OLI",
    "LC09": "L9_OLI", "LO09": "L9_OLI", "LANDSAT_9": "L9_OLI", "LANDSAT-9": "L9_OLI", "L9": "L9_OLI",
    "LE07": "L7_ETM", "LANDSAT_7": "L7_ETM", "LANDSAT-7": "L7_ETM", "L7": "L7_ETM",
    "LT05": "L5_TM", "LANDSAT_5": "L5_TM", "LANDSAT-5": "L5_TM", "L5": "L5_TM",
    "GF6": "GF6_WFV", "GAOFEN-6": "GF6_WFV",
    "TERRA": "TERRA_MODIS", "AQUA": "AQUA_MODIS", "MOD": "TERRA_MODIS", "MYD": "AQUA_MODIS",
}


@dataclass(frozen=True)
class Band:
    """One spectral band; wavelengths in micrometres, resolution in metres."""

    id: str
    common_name: str
    center_wavelength: float
    full_width_half_max: float
    resolution: float
    kind: BandKind


@dataclass(frozen=True)
class Sensor:
    """An imaging instrument on one platform, with its bands in product order."""

    id: str
    platform: str
    instrument: str
    constellation: str
    family: str
    bands: tuple[Band, ...]
    srf_file: str | None
    srf_source: str | None
    toa_uncertainty: float = 0.05  # relative, one sigma: the calibration term of the SR uncertainty
    product_code: str = ""  # how output file names spell the sensor, where its ARD has a convention (GF1WFV1)

    @property
    def code(self) -> str:
        return self.product_code or self.id

    def band(self, key: str) -> Band:
        """Look a band up by id (``B8A``, ``B5``) or common name (``nir08``)."""
        for band in self.bands:
            if key in (band.id, band.common_name) or key.upper() == band.id.upper():
                return band
        raise SensorError(f"sensor {self.id} has no band {key!r}; it has {', '.join(self.band_ids)}")

    @property
    def band_ids(self) -> tuple[str, ...]:
        return tuple(band.id for band in self.bands)

    @property
    def reflective_bands(self) -> tuple[Band, ...]:
        return tuple(band for band in self.bands if band.kind == "reflectance")

    @property
    def thermal_bands(self) -> tuple[Band, ...]:
        return tuple(band for band in self.bands if band.kind == "thermal")


def _data_file(*parts: str) -> resources.abc.Traversable:
    return resources.files("musyq").joinpath("data", *parts)


@cache
def available_sensors() -> tuple[str, ...]:
    """Ids of every sensor that has a description file."""
    folder = _data_file("sensors")
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")))


@cache
def _product_codes() -> dict[str, str]:
    codes = {}
    for sensor_id in available_sensors():
        code = json.loads(_data_file("sensors", f"{sensor_id}.json").read_text()).get("product_code")
        if code:
            codes[str(code).upper()] = sensor_id
    return codes


def resolve_sensor_id(name: str) -> str:
    """Turn a user or metadata spelling (``S2B``, ``LC08``, ``l8_oli``, ``GF1WFV1``) into a sensor file id."""
    key = name.strip().upper().replace(" ", "_")
    known = available_sensors()
    if key in known:
        return key
    if key in ALIASES:
        return ALIASES[key]
    if key in _product_codes():
        return _product_codes()[key]
    raise SensorError(f"unknown sensor {name!r}; known sensors: {', '.join(known)}")


@cache
def get_sensor(name: str) -> Sensor:
    """Load a sensor description by id or alias."""
    sensor_id = resolve_sensor_id(name)
    record = json.loads(_data_file("sensors", f"{sensor_id}.json").read_text())
    bands = tuple(
        Band(
            id=b["id"],
            common_name=b["common_name"],
            center_wavelength=float(b["center_wavelength"]),
            full_width_half_max=float(b["full_width_half_max"]),
            resolution=float(b["resolution"]),
            kind=b["kind"],
        )
        for b in record["bands"]
    )
    return Sensor(
        id=record["id"],
        platform=record["platform"],
        instrument=record["instrument"],
        constellation=record["constellation"],
        family=record["family"],
        bands=bands,
        srf_file=record.get("srf"),
        srf_source=record.get("srf_source"),
        toa_uncertainty=float(record.get("toa_uncertainty", 0.05)),
        product_code=str(record.get("product_code", "")),
    )


@dataclass(frozen=True)
class SpectralResponse:
    """Relative spectral responses of a sensor's bands on a common 1 nm wavelength grid."""

    sensor_id: str
    wavelength_nm: NDArray[np.float64]
    band_ids: tuple[str, ...]
    response: NDArray[np.float64]  # (band, wavelength), peak-normalised

    def of(self, band_id: str) -> NDArray[np.float64]:
        return np.asarray(self.response[self.band_ids.index(band_id)], dtype=np.float64)


@cache
def spectral_response(name: str) -> SpectralResponse:
    """The packaged spectral response functions of a sensor."""
    sensor = get_sensor(name)
    if sensor.srf_file is None:
        raise SensorError(f"sensor {sensor.id} has no spectral response functions in musyq")
    with _data_file("srf", sensor.srf_file).open() as handle:
        header = handle.readline().strip().split(",")
        table = np.loadtxt(handle, delimiter=",", ndmin=2)
    return SpectralResponse(sensor.id, table[:, 0], tuple(header[1:]), np.ascontiguousarray(table[:, 1:].T))


@cache
def solar_spectrum() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Thuillier (2003) extraterrestrial solar irradiance: wavelength (nm), W m-2 um-1."""
    with _data_file("solar", "thuillier2003.csv").open() as handle:
        table = np.loadtxt(handle, delimiter=",", skiprows=1)
    return table[:, 0], table[:, 1]


def band_average(
    name: str, wavelength_nm: ArrayLike, spectrum: ArrayLike, bands: tuple[str, ...] | None = None,
    weight: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """SRF-weighted band values of one or many spectra.

    ``spectrum`` has the wavelength on its last axis; the result has the bands there instead. An
    optional ``weight`` spectrum (such as the solar irradiance, for reflectances) multiplies the
    response, so that the band value is the one the sensor would record.
    """
    srf = spectral_response(name)
    band_ids = bands if bands is not None else srf.band_ids
    rows = np.array([srf.band_ids.index(b) for b in band_ids]) if band_ids else np.zeros(0, int)
    wl = np.asarray(wavelength_nm, dtype=float)
    values = np.asarray(spectrum, dtype=float)
    order = np.argsort(wl)
    flat = values.reshape(-1, values.shape[-1])[:, order]
    # Put every spectrum on the SRF grid; outside the given range it contributes nothing.
    sampled = np.stack([np.interp(srf.wavelength_nm, wl[order], row, left=np.nan, right=np.nan) for row in flat])
    kernel = srf.response[rows]
    if weight is not None:
        kernel = kernel * np.asarray(weight, dtype=float)[None, :]
    covered = np.isfinite(sampled)
    numerator = np.where(covered, sampled, 0.0) @ kernel.T
    denominator = covered.astype(float) @ kernel.T
    with np.errstate(invalid="ignore", divide="ignore"):
        result = numerator / denominator
    return np.asarray(result.reshape(values.shape[:-1] + (len(band_ids),)), dtype=np.float64)


@cache
def solar_irradiance(name: str) -> dict[str, float]:
    """Band-averaged exoatmospheric solar irradiance (W m-2 um-1) of every band with an SRF."""
    wl, irradiance = solar_spectrum()
    values = band_average(name, wl, irradiance)
    return {band: float(v) for band, v in zip(spectral_response(name).band_ids, values, strict=True)}


ENDMEMBERS_FILE = "vegetation-soil.csv"


@cache
def endmember_spectra() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Green vegetation and bare soil reflectance spectra (wavelength nm; rows vegetation, soil), shipped as
    made by ``musyq bandpass endmembers`` from PROSAIL."""
    with _data_file("endmembers", ENDMEMBERS_FILE).open() as handle:
        table = np.loadtxt(handle, delimiter=",", skiprows=1)
    return table[:, 0], np.ascontiguousarray(table[:, 1:].T)


def reflectance_bands(name: str, wavelength_nm: ArrayLike, spectra: ArrayLike,
                      bands: tuple[str, ...]) -> NDArray[np.float64]:
    """Band reflectances a sensor would record of reflectance spectra: SRF times solar spectrum weighted."""
    solar_wl, irradiance = solar_spectrum()
    weight = np.interp(spectral_response(name).wavelength_nm, solar_wl, irradiance)
    return band_average(name, wavelength_nm, spectra, bands, weight=weight)


@cache
def endmember_bands(name: str, bands: tuple[str, ...]) -> NDArray[np.float64]:
    """The vegetation and soil endmembers as the sensor's bands would record them: (2, bands)."""
    members = reflectance_bands(name, *endmember_spectra(), bands)
    members.setflags(write=False)  # shared by every caller through the cache
    return members
