"""Digital numbers to top-of-atmosphere reflectance and brightness temperature.

Pure array functions; readers supply the calibration constants from product metadata. Fill pixels
come back as NaN so that every later stage sees them the same way.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from musyq.core.scene import (
    Calibration,
    RadianceCalibration,
    RescaledReflectance,
    ScaledReflectance,
    ThermalCalibration,
)

FloatArray = NDArray[np.float32]


def _masked(result: NDArray[np.floating], dn: NDArray[np.generic], nodata: float | None) -> FloatArray:
    out = result.astype(np.float32, copy=False)
    if nodata is not None:
        out[dn == nodata] = np.nan
    return out


def reflectance_from_scaled_dn(
    dn: ArrayLike, quantification: float, offset: float = 0.0, nodata: float | None = 0
) -> FloatArray:
    """Sentinel-2 L1C: ``(DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE``.

    The L1C product already is reflectance (sun angle and Earth-Sun distance applied by ESA).
    """
    values = np.asarray(dn)
    return _masked((values.astype(np.float32) + np.float32(offset)) / np.float32(quantification), values, nodata)


def reflectance_from_rescaling(
    dn: ArrayLike, mult: float, add: float, sun_zenith: ArrayLike, nodata: float | None = 0
) -> FloatArray:
    """Landsat Level-1: ``(M_rho DN + A_rho) / cos(sun zenith)``; sun zenith in degrees, per pixel or scalar."""
    values = np.asarray(dn)
    cos_sz = np.cos(np.radians(np.asarray(sun_zenith, dtype=np.float32)))
    planetary = np.float32(mult) * values.astype(np.float32) + np.float32(add)
    return _masked(planetary / cos_sz, values, nodata)


def radiance_from_rescaling(dn: ArrayLike, mult: float, add: float, nodata: float | None = 0) -> FloatArray:
    """At-sensor spectral radiance ``M_L DN + A_L`` (W m-2 sr-1 um-1)."""
    values = np.asarray(dn)
    return _masked(np.float32(mult) * values.astype(np.float32) + np.float32(add), values, nodata)


def reflectance_from_radiance(
    radiance: ArrayLike, solar_irradiance: float, sun_zenith: ArrayLike, earth_sun_distance: float
) -> FloatArray:
    """``pi L d^2 / (E_sun cos(sun zenith))``, for sensors calibrated to radiance (Gaofen WFV)."""
    cos_sz = np.cos(np.radians(np.asarray(sun_zenith, dtype=np.float32)))
    scale = np.float32(np.pi * earth_sun_distance**2 / solar_irradiance)
    return (np.asarray(radiance, dtype=np.float32) * scale / cos_sz).astype(np.float32)


def brightness_temperature(radiance: ArrayLike, k1: float, k2: float) -> FloatArray:
    """Planck inversion with the band constants: ``K2 / ln(K1 / L + 1)`` in kelvin."""
    values = np.asarray(radiance, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.float32(k2) / np.log(np.float32(k1) / values + np.float32(1.0)), dtype=np.float32)


@numba.njit(nogil=True, cache=True)
def _linear_over_cosine(dn: NDArray[np.float32], gain: float, bias: float, scale: float,
                        sun_zenith: NDArray[np.float32], out: NDArray[np.float32]) -> None:  # pragma: no cover
    """``(gain DN + bias) scale / cos(sun zenith)`` in one pass without temporaries; it runs in the tile's band
    threads (no GIL), one band each."""
    flat_dn, flat_sun, flat_out = dn.ravel(), sun_zenith.ravel(), out.ravel()
    to_radians = np.pi / 180.0
    for i in range(flat_dn.size):
        flat_out[i] = (gain * flat_dn[i] + bias) * scale / np.cos(flat_sun[i] * to_radians)


def _fused(dn: ArrayLike, gain: float, bias: float, scale: float, sun_zenith: ArrayLike) -> FloatArray | None:
    """The one-pass kernel's result where DN and sun zenith are float32 pixel arrays of one shape, else None."""
    values, sun = np.asarray(dn), np.asarray(sun_zenith)
    if not (values.dtype == np.float32 and sun.dtype == np.float32 and values.shape == sun.shape
            and values.flags.c_contiguous and sun.flags.c_contiguous):
        return None
    out = np.empty_like(values)
    _linear_over_cosine(values, gain, bias, scale, sun, out)
    return out


def calibrate(
    dn: ArrayLike, calibration: Calibration, sun_zenith: ArrayLike, earth_sun_distance: float
) -> FloatArray:
    """TOA reflectance (or brightness temperature for thermal bands) from DN already free of fill (NaN)."""
    match calibration:
        case ScaledReflectance(quantification, offset):
            return reflectance_from_scaled_dn(dn, quantification, offset, nodata=None)
        case RescaledReflectance(mult, add):
            fused = _fused(dn, mult, add, 1.0, sun_zenith)
            if fused is not None:
                return fused
            return reflectance_from_rescaling(dn, mult, add, sun_zenith, nodata=None)
        case RadianceCalibration(gain, bias, irradiance):
            fused = _fused(dn, gain, bias, np.pi * earth_sun_distance**2 / irradiance, sun_zenith)
            if fused is not None:
                return fused
            radiance = radiance_from_rescaling(dn, gain, bias, nodata=None)
            return reflectance_from_radiance(radiance, irradiance, sun_zenith, earth_sun_distance)
        case ThermalCalibration(mult, add, k1, k2):
            return brightness_temperature(radiance_from_rescaling(dn, mult, add, nodata=None), k1, k2)
    raise TypeError(f"unknown calibration {calibration!r}")
