"""The SNAP Sentinel-2 biophysical networks (v2.1) reproduce SNAP's own test cases, their Jacobian sigma agrees
with finite perturbations, and out-of-domain inputs are flagged."""

from __future__ import annotations

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
