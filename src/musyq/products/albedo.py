"""Shortwave broadband albedo by narrow-to-broadband coefficients (shipped in ``data/albedo``), with its sigma.

From NBAR reflectance the mix is a broadband *reflectance* at the NBAR geometry, the usual proxy: as Hagolle
points out, it is not an albedo, which integrates the BRDF over the view (black-sky, for the sun's direction) and
also over the sun (white-sky, diffuse light). Where per-pixel BRDF parameters are given, each band's black- and
white-sky albedo comes from the kernel integrals of Lucht et al. (2000), and the same coefficients mix them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from musyq.core.errors import MusyqError
from musyq.core.sensors import get_sensor
from musyq.products.names import ALBEDO_PRODUCTS


class Mix(NamedTuple):
    name: str
    source: str
    weights: dict[str, float]
    offset: float


class Albedo(NamedTuple):
    value: NDArray[np.float32]
    sigma: NDArray[np.float32] | None


@cache
def _table() -> dict[str, Any]:
    return dict(json.loads((files("musyq") / "data" / "albedo" / "narrow-to-broadband.json").read_text()))


def coefficients_for(sensor_id: str) -> Mix:
    """The coefficient set of the sensor family whose bands the reflectance follows; other sensors (Gaofen
    WFV, MODIS) take one through their bandpass-adjusted bands."""
    family = get_sensor(sensor_id).family
    for name, entry in _table()["sets"].items():
        if family in entry["families"]:
            return Mix(name, entry["source"], dict(entry["weights"]), float(entry["offset"]))
    raise MusyqError(f"no narrow-to-broadband coefficients for {sensor_id}; adjust its bands to L8_OLI or a "
                     "Sentinel-2 MSI (musyq ard --bandpass-to) and make the albedo from those")


def _check(mix: Mix, bands: Mapping[str, object]) -> None:
    missing = [b for b in mix.weights if b not in bands]
    if missing:
        raise MusyqError(f"the {mix.name} albedo needs {', '.join(missing)}, which the input lacks")


def broadband(mix: Mix, bands: Mapping[str, NDArray[np.floating]],
              uncertainty: Mapping[str, NDArray[np.floating]] | None = None) -> Albedo:
    """``sum_k w_k rho_k + offset``; its sigma ``sqrt(sum_k (w_k sigma_k)^2)`` over independent bands."""
    _check(mix, bands)
    value = np.full(np.shape(next(iter(bands.values()))), np.float32(mix.offset), dtype=np.float32)
    for band, weight in mix.weights.items():
        value += np.float32(weight) * np.asarray(bands[band], dtype=np.float32)
    if uncertainty is None:
        return Albedo(value, None)
    _check(mix, uncertainty)
    variance = np.zeros_like(value)
    for band, weight in mix.weights.items():
        variance += (np.float32(weight) * np.asarray(uncertainty[band], dtype=np.float32)) ** 2
    return Albedo(value, np.sqrt(variance))


def spectral_albedo(kind: str, iso: NDArray[np.floating], vol: NDArray[np.floating], geo: NDArray[np.floating],
                    sun_zenith: NDArray[np.floating] | float = 0.0) -> NDArray[np.float32]:
    """A band's black-sky (``BSA``, at ``sun_zenith`` degrees) or white-sky (``WSA``) albedo from its
    RossThick-LiSparse-Reciprocal parameters."""
    integrals = _table()["kernel_integrals"]
    if kind == "WSA":
        white = integrals["white_sky"]
        return np.asarray(iso + white["vol"] * vol + white["geo"] * geo, dtype=np.float32)
    if kind != "BSA":
        raise MusyqError(f"{kind!r} is neither BSA nor WSA")
    theta = np.radians(np.asarray(sun_zenith, dtype=np.float64))

    def integral(g: list[float]) -> NDArray[np.float64]:
        return np.asarray(g[0] + g[1] * theta**2 + g[2] * theta**3)

    black = integrals["black_sky"]
    return np.asarray(iso + integral(black["vol"]) * vol + integral(black["geo"]) * geo, dtype=np.float32)
