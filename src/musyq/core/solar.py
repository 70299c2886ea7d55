"""Sun position and Earth-Sun distance, vectorised over pixels.

Products without angle metadata (a plain stack of band files) still need per-pixel sun angles. The
NOAA solar calculator equations (after Meeus, *Astronomical Algorithms*) give the geometric sun
position to about 0.01 degree over 1950-2050, which is far below what reflectance needs.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _julian_century(when: datetime) -> float:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - datetime(2000, 1, 1, 12, tzinfo=timezone.utc)).total_seconds()
    return seconds / 86400.0 / 36525.0


def solar_angles(when: datetime, lat: ArrayLike, lon: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Geometric solar zenith and azimuth (degrees, azimuth clockwise from north) at ``when`` (UTC).

    ``lat`` and ``lon`` (degrees) broadcast against each other, so a whole pixel grid is one call.
    """
    t = _julian_century(when)
    lat_r = np.radians(np.asarray(lat, dtype=float))
    lon_d = np.asarray(lon, dtype=float)

    mean_lon = np.radians((280.46646 + t * (36000.76983 + t * 0.0003032)) % 360.0)
    mean_anom = np.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    ecc = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    centre = np.radians(
        np.sin(mean_anom) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + np.sin(2 * mean_anom) * (0.019993 - 0.000101 * t)
        + np.sin(3 * mean_anom) * 0.000289
    )
    true_lon = mean_lon + centre
    omega = np.radians(125.04 - 1934.136 * t)
    apparent_lon = true_lon - np.radians(0.00569 + 0.00478 * np.sin(omega))
    mean_obliquity = 23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0
    obliquity = np.radians(mean_obliquity + 0.00256 * np.cos(omega))
    declination = np.arcsin(np.sin(obliquity) * np.sin(apparent_lon))

    y = np.tan(obliquity / 2) ** 2
    eq_time_min = 4 * np.degrees(
        y * np.sin(2 * mean_lon)
        - 2 * ecc * np.sin(mean_anom)
        + 4 * ecc * y * np.sin(mean_anom) * np.cos(2 * mean_lon)
        - 0.5 * y * y * np.sin(4 * mean_lon)
        - 1.25 * ecc * ecc * np.sin(2 * mean_anom)
    )
    when_utc = when if when.tzinfo is None else when.astimezone(timezone.utc)
    minutes = when_utc.hour * 60 + when_utc.minute + (when_utc.second + when_utc.microsecond / 1e6) / 60
    true_solar_time = (minutes + eq_time_min + 4 * lon_d) % 1440.0
    hour_angle = np.radians(true_solar_time / 4.0 - 180.0)

    cos_zenith = np.sin(lat_r) * np.sin(declination) + np.cos(lat_r) * np.cos(declination) * np.cos(hour_angle)
    zenith = np.arccos(np.clip(cos_zenith, -1.0, 1.0))
    # Azimuth from the north, clockwise, from the east and north components of the sun direction.
    east = -np.cos(declination) * np.sin(hour_angle)
    north = np.cos(lat_r) * np.sin(declination) - np.sin(lat_r) * np.cos(declination) * np.cos(hour_angle)
    azimuth = np.degrees(np.arctan2(east, north)) % 360.0
    return np.degrees(zenith), azimuth


def earth_sun_distance(day_of_year: int | ArrayLike) -> NDArray[np.float64]:
    """Earth-Sun distance in astronomical units from the day of year."""
    doy = np.asarray(day_of_year, dtype=float)
    return np.asarray(1.0 - 0.01673 * np.cos(0.0172 * (doy - 4.0)))
