"""The SNAP Sentinel-2 biophysical networks (v2.1) reproduce SNAP's own test cases, their Jacobian sigma agrees
with finite perturbations, and out-of-domain inputs are flagged."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from musyq.core.errors import MusyqError
from musyq.products.biophysical import INPUT_BANDS, INPUT_OUT_OF_DOMAIN, OUTPUT_ABOVE, OUTPUT_BELOW, biophysical

CASES = Path(__file__).parent / "data" / "snap-biophysical"


def _cases(variable: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    table = np.loadtxt(CASES / f"{variable}_TestCases", delimiter=",")
    bands = {name: table[:, i] for i, name in enumerate(INPUT_BANDS)}
    view, sun, azimuth = (np.degrees(np.arccos(np.clip(table[:, k], -1, 1))) for k in (8, 9, 10))
    return bands, view, sun, azimuth, table[:, 11]


@pytest.mark.parametrize("variable", ["LAI", "FAPAR"])
def test_snap_test_cases_are_reproduced(variable: str) -> None:
    bands, view, sun, azimuth, expected = _cases(variable)
    result = biophysical(variable, bands, view, sun, azimuth)
    assert expected.size == 100
    # SNAP leaves out (NaN) what lies beyond the tolerance of the valid range; musyq holds it and flags it
    beyond = np.isnan(expected)
    assert np.all(result.quality[beyond] & (OUTPUT_ABOVE | OUTPUT_BELOW))
    assert not np.any(result.quality[~beyond] & (OUTPUT_ABOVE | OUTPUT_BELOW))
    # SNAP's cases are printed to five significant digits
    np.testing.assert_allclose(result.value[~beyond], expected[~beyond], rtol=2e-4, atol=2e-4)


def test_jacobian_sigma_matches_perturbations() -> None:
    bands, view, sun, azimuth, _ = _cases("LAI")
    sigma = {b: np.full_like(v, 0.002) for b, v in bands.items()}
    result = biophysical("LAI", bands, view, sun, azimuth, sigma)
    variance = np.zeros_like(result.value)
    for band in INPUT_BANDS:
        up = biophysical("LAI", bands | {band: bands[band] + 1e-6}, view, sun, azimuth).value
        down = biophysical("LAI", bands | {band: bands[band] - 1e-6}, view, sun, azimuth).value
        variance += ((up - down) / 2e-6 * 0.002) ** 2
    inside = (result.value > 0.01) & (result.value < 7.9)  # not held at a bound
    assert result.sigma is not None and inside.sum() > 80
    np.testing.assert_allclose(result.sigma[inside], np.sqrt(variance[inside]), rtol=1e-4)


def test_domain_flags_and_missing_bands() -> None:
    bands, view, sun, azimuth, _ = _cases("LAI")
    bright = bands | {"green": np.full_like(bands["green"], 0.6)}  # far above the training set's green
    result = biophysical("LAI", bright, view, sun, azimuth)
    assert np.all(result.quality & INPUT_OUT_OF_DOMAIN)
    assert not np.any(biophysical("LAI", bands, view, sun, azimuth).quality & INPUT_OUT_OF_DOMAIN)
    with pytest.raises(MusyqError, match="LAI needs rededge1"):
        biophysical("LAI", {k: v for k, v in bands.items() if k != "rededge1"}, view, sun, azimuth)


def test_definition_domain_grid_flags_spectra_inside_the_bounds_but_unlike_the_training_set() -> None:
    """SNAP's grid: each band's range in ten cells, and only the 11 039 of 10^8 cell combinations the training
    spectra filled are in the domain. A spectrum within every band's bounds but with green brighter than red
    edge 3 and NIR (no canopy or soil looks so) lies in an empty cell."""
    home = Path(str(files("musyq"))) / "data" / "snap-biophysical" / "2_1" / "LAI"
    grid = np.loadtxt(home / "LAI_DefinitionDomain_Grid", delimiter=",", dtype=int)
    low, high = np.loadtxt(home / "LAI_DefinitionDomain_MinMax", delimiter=",")
    odd = dict(zip(INPUT_BANDS, (0.25, 0.01, 0.01, 0.02, 0.03, 0.03, 0.02, 0.01), strict=True))
    cell = tuple(int(c) for c in np.floor(10 * (np.array(list(odd.values())) - low) / (high - low)) + 1)
    assert cell not in set(map(tuple, grid)) and all(low <= v <= high for v, low, high in
                                                     zip(odd.values(), low, high, strict=True))
    result = biophysical("LAI", {k: np.array([v]) for k, v in odd.items()}, 5.0, 30.0, 50.0)
    assert result.quality[0] & INPUT_OUT_OF_DOMAIN
    # the centre of a filled cell is in the domain
    filled = (grid[0] - 0.5) / 10 * (high - low) + low
    inside = biophysical("LAI", {k: np.array([v]) for k, v in zip(INPUT_BANDS, filled, strict=True)}, 5.0, 30.0, 50.0)
    assert not inside.quality[0] & INPUT_OUT_OF_DOMAIN
