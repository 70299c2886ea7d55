"""The ARD++ cube, composites and ARD+ months from real multi-date, multi-sensor catalogs, through the CLI."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from typer.testing import CliRunner

from musyq.cli import app
from musyq.core.errors import MusyqError
from musyq.timeseries.composite import CLEAR, SELECTORS, Block, composite, periods
from musyq.timeseries.methods import METHODS
from musyq.timeseries.cube import open_cube
from musyq.timeseries.reconstruct import FLAG_NAMES, ReconstructOptions
from musyq.timeseries.tiles import reconstruct_tile
from tests.conftest import SAMPLES
from tests.series_catalog import SERIES, scene_dates, write_catalog

runner = CliRunner()
EPOCH = date(1970, 1, 1)


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def landsat_catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Real Landsat 5 and 7 surface reflectance of 2009-2010 (eo-box) as a musyq catalog."""
    return write_catalog(tmp_path_factory.mktemp("landsat") / "ard", "2009-01-01", "2010-12-31")


@pytest.fixture(scope="module")
def demo_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`musyq ard` on the bundled Sentinel-2 and Landsat 8 samples, one tile each, in one catalog."""
    out = tmp_path_factory.mktemp("demo") / "ard"
    invoke("ard", str(SAMPLES / "S2A_MSIL1C_20170729_T19UDP_900m"), "--out", str(out), "--tile", "19UDP",
           "--resolution", "900")
    invoke("ard", str(SAMPLES / "LC08_L1TP_016037_20170813_20170814_01_RT_900m"), "--out", str(out), "--tile",
           "17SNS", "--resolution", "900")
    return out


def test_cube_of_ard_written_by_musyq_ard(demo_catalog: Path) -> None:
    for tile, sensor, day, crs in (("19UDP", "S2A_MSI", "2017-07-29", "EPSG:32619"),
                                   ("17SNS", "L8_OLI", "2017-08-13", "EPSG:32617")):
        cube = open_cube(demo_catalog, tile, "2017-01-01", "2017-12-31")
        assert cube.sizes == {"time": 1, "y": 122, "x": 122}
        assert list(cube.sensor.values) == [sensor] and str(cube.time.values[0])[:10] == day
        assert cube.odc.geobox.crs == crs and cube.attrs["resolution_m"] == 900
        assert [v for v in cube.data_vars][:6] == ["blue", "green", "red", "nir", "swir16", "swir22"]
        sr = next(demo_catalog.glob(f"{tile}/*/*.SR.tif"))
        with rasterio.open(sr) as src:
            names = [d for d in src.descriptions]
            nir = src.read(names.index("nir08") + 1 if "nir08" in names else 5).astype(np.float32)
        expected = np.where(nir == 0, np.nan, nir / 10_000)
        np.testing.assert_allclose(cube.nir.values[0], expected, rtol=1e-6)  # Sentinel-2's narrow NIR, as HLS
        assert set(np.unique(cube.quality.values)) <= {0, 1, 2, 3, 4, 5}


def test_two_sensors_on_one_grid_and_a_lossless_zarr(landsat_catalog: tuple[Path, str], tmp_path: Path) -> None:
    folder, tile = landsat_catalog
    cube = open_cube(folder, tile, "2009-01-01", "2010-12-31", bands=("red", "nir", "swir16"))
    dates = scene_dates("2009-01-01", "2010-12-31")
    assert cube.sizes["time"] == len(dates) and cube.sizes["y"] == cube.sizes["x"] == 61
    assert set(cube.sensor.values) == {"L5_TM", "L7_ETM"} and bool((np.diff(cube.time.values) > 0).all())
    assert open_cube(folder, tile, "2009-01-01", "2010-12-31").attrs["absent_bands"] == ["blue", "green", "swir22"]
    l7 = open_cube(folder, tile, "2009-01-01", "2010-12-31", sensors=["L7"], bands=("red",))
    assert set(l7.sensor.values) == {"L7_ETM"} and l7.sizes["time"] == sum(d.name.startswith("LE7") for d in dates)
    first = dates[0]
    with rasterio.open(first / f"{first.name}_b4.tif") as src:
        nir = src.read(1).astype(np.float32)
    ok = np.isfinite(cube.nir.values[0])
    np.testing.assert_allclose(cube.nir.values[0][ok], nir[ok] / 10_000, rtol=1e-6)
    store = tmp_path / "cube.zarr"
    invoke("cube", "--catalog", str(folder), "--tile", tile, "--from", "2009-01-01", "--to", "2010-12-31",
           "--bands", "red,nir,swir16", "--out", str(store))
    back = xr.open_zarr(store)
    assert back.red.chunks[0] == (cube.sizes["time"],)  # one pixel's series is one read
    loaded = cube.load()
    for name in ("red", "nir", "swir16", "quality", "processing", "sun_zenith"):
        np.testing.assert_array_equal(back[name].values, loaded[name].values)
    assert list(back.sensor.values) == list(loaded.sensor.values)
    np.testing.assert_array_equal(back.time.values, loaded.time.values)


def test_bad_cube_requests_are_named(landsat_catalog: tuple[Path, str], tmp_path: Path) -> None:
    folder, tile = landsat_catalog
    with pytest.raises(MusyqError, match="no ARD item of tile 31UFS"):
        open_cube(folder, "31UFS", "2009-01-01", "2009-12-31")
    with pytest.raises(MusyqError, match="unknown band 'nir2'"):
        open_cube(folder, tile, "2009-01-01", "2009-12-31", bands=("nir2",))
    result = runner.invoke(app, ["cube", "--catalog", str(tmp_path), "--tile", tile, "--from", "2009-01-01",
                                 "--to", "2009-12-31", "--out", str(tmp_path / "c.zarr")])
    assert result.exit_code == 1 and "holds no collection.json" in " ".join(result.output.split())


@pytest.mark.parametrize("method", ["bap", "medoid", "maxndvi", "nearest-median"])
def test_composites_pick_clear_observations_and_say_which(landsat_catalog: tuple[Path, str], tmp_path: Path,
                                                        method: str) -> None:
    folder, tile = landsat_catalog
    out = tmp_path / method
    invoke("composite", "--catalog", str(folder), "--tile", tile, "--from", "2009-05-01", "--to", "2009-09-30",
           "--method", method, "--period", "month", "--bands", "red,nir,swir16", "--out", str(out))
    cube = open_cube(folder, tile, "2009-05-01", "2009-09-30", bands=("red", "nir", "swir16")).load()
    days = ((cube.time.values.astype("datetime64[D]") - np.datetime64("1970-01-01")) / np.timedelta64(1, "D"))
    items = sorted(out.glob(f"{tile}/*/*.json"))
    assert len(items) == 5
    for item_path in items:
        item = json.loads(item_path.read_text())
        legend = {int(k): v for k, v in item["properties"]["musyq:sensors"].items()}
        layers = {}
        for key in ("SR", "DATE", "COUNT", "SENSOR"):
            with rasterio.open(item_path.parent / item["assets"][key]["href"]) as src:
                layers[key] = src.read()
        start = np.datetime64(item["properties"]["start_datetime"][:10])
        end = np.datetime64(item["properties"]["end_datetime"][:10])
        inside = (cube.time.values >= start) & (cube.time.values < end + np.timedelta64(1, "D"))
        quality = cube.quality.values[inside]
        clear = np.isin(quality, (1, 2)) & np.isfinite(cube.red.values[inside]) & np.isfinite(
            cube.nir.values[inside]) & np.isfinite(cube.swir16.values[inside])
        np.testing.assert_array_equal(layers["COUNT"][0], clear.sum(axis=0))
        chosen = layers["DATE"][0].astype(float)
        has_clear = clear.any(axis=0)
        assert np.all(chosen[has_clear] > 0) and np.all(chosen[~has_clear & (quality != 4).all(axis=0)] == 0)
        for y, x in zip(*np.nonzero(has_clear)):
            k = int(np.flatnonzero(days[inside] == chosen[y, x])[0])
            assert quality[k, y, x] in (1, 2)  # never cloud, shadow or fill when a clear one exists
            assert legend[int(layers["SENSOR"][0, y, x])] == str(cube.sensor.values[inside][k])
            assert layers["SR"][0, y, x] == round(float(cube.red.values[inside][k, y, x]) * 10_000)


def test_composite_methods_on_a_hand_made_pixel() -> None:
    """One pixel, four dates: a cloud (brightest, lowest NDVI), a shadow, and two clear of known NDVI."""
    days = np.array([10.0, 20.0, 30.0, 40.0])
    red = np.array([0.30, 0.02, 0.05, 0.08], dtype=np.float32)
    nir = np.array([0.32, 0.05, 0.40, 0.30], dtype=np.float32)
    bands = np.stack([red, nir])[:, :, None, None]
    quality = np.array([5, 3, CLEAR, CLEAR], dtype=np.uint8)[:, None, None]
    block = Block(days, bands, ("red", "nir"), quality, np.zeros((4, 1, 1), np.float32), ("A", "B", "A", "B"), 30.0)
    assert composite(block, "maxndvi", 25, 15).day[0, 0] == 30.0
    bap = composite(block, "bap", 40, 15)
    assert bap.day[0, 0] == 40.0 and bap.sensor[0, 0] == 3 and bap.clear_count[0, 0] == 2
    median = composite(block, "median", 25, 15)
    np.testing.assert_allclose(median.values[:, 0, 0], [0.065, 0.35])
    assert np.isnan(median.day[0, 0])
    nothing = Block(days, bands, ("red", "nir"), np.zeros((4, 1, 1), np.uint8), block.view_zenith,
                    block.sensors, 30.0)
    assert np.isnan(composite(nothing, "bap", 25, 15).values).all()
    assert METHODS == ("bap", "median", *SELECTORS)  # the names the planner checks are the methods there are


def test_periods() -> None:
    assert periods(date(2020, 1, 15), date(2020, 3, 2), "month") == [
        (date(2020, 1, 1), date(2020, 1, 31)), (date(2020, 2, 1), date(2020, 2, 29)),
        (date(2020, 3, 1), date(2020, 3, 31))]
    assert periods(date(2020, 1, 1), date(2020, 1, 31), "P16D") == [
        (date(2020, 1, 1), date(2020, 1, 16)), (date(2020, 1, 17), date(2020, 1, 31))]
    assert periods(date(2020, 1, 10), date(2020, 6, 1), "season") == [
        (date(2019, 12, 1), date(2020, 2, 29)), (date(2020, 3, 1), date(2020, 5, 31)),
        (date(2020, 6, 1), date(2020, 8, 31))]
    with pytest.raises(MusyqError, match="unknown period 'fortnight'"):
        periods(date(2020, 1, 1), date(2020, 2, 1), "fortnight")


def test_reconstructed_months_from_the_command_line(landsat_catalog: tuple[Path, str], tmp_path: Path) -> None:
    folder, tile = landsat_catalog
    out = tmp_path / "ardp"
    invoke("reconstruct", "--catalog", str(folder), "--tile", tile, "--from", "2009-01-01", "--to", "2010-12-31",
           "--bands", "red,nir,swir16", "--out", str(out))
    items = sorted(out.glob(f"{tile}/ARDP.30m.*/*.json"))
    assert len(items) == 24 and (out / "collection.json").exists() and not (out / ".work").exists()
    july = json.loads(next(p for p in items if ".20090701-" in p.name).read_text())
    shares = july["properties"]["musyq:flag_percent"]
    assert shares["not fillable"] < 1 and sum(shares.values()) == pytest.approx(100, abs=0.1)
    with rasterio.open(out / tile / july["id"] / july["assets"]["SR"]["href"]) as src:
        sr = src.read().astype(float) / 10_000
    with rasterio.open(out / tile / july["id"] / july["assets"]["FLAG"]["href"]) as src:
        flag = src.read(1)
    ndvi = (sr[1] - sr[0]) / (sr[1] + sr[0])
    assert set(np.unique(flag)) <= set(FLAG_NAMES) and 0.1 < np.median(ndvi[flag > 0]) < 0.9
    # the July observations of pixels flagged observed are close to the mid-month values
    cube = open_cube(folder, tile, "2009-07-01", "2009-07-31", bands=("red", "nir")).load()
    clear = np.isin(cube.quality.values, (1, 2))
    observed = np.where(clear, (cube.nir - cube.red).values / (cube.nir + cube.red).values, np.nan)
    with np.errstate(all="ignore"):
        seen = np.nanmean(observed, axis=0)
    both = (flag == 1) & np.isfinite(seen)
    assert both.sum() > 1000 and np.sqrt(np.nanmean((ndvi[both] - seen[both]) ** 2)) < 0.06


def test_a_killed_reconstruction_resumes_at_the_next_block(landsat_catalog: tuple[Path, str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import musyq.timeseries.tiles as tiles

    monkeypatch.setattr(tiles, "reconstruction_rows", lambda *args: 20)
    folder, tile = landsat_catalog
    cube = open_cube(folder, tile, "2009-01-01", "2009-12-31", bands=("red", "nir"))
    options = ReconstructOptions(minimum=0.0)

    class Killed(Exception):
        pass

    def kill_after_first_block(name: str, done: int, total: int) -> None:
        if done == 20:
            raise Killed

    with pytest.raises(Killed):
        reconstruct_tile(cube, date(2009, 1, 1), date(2009, 12, 31), tmp_path / "a", options,
                         progress=kill_after_first_block)
    assert not list((tmp_path / "a").glob(f"{tile}/*/*.json"))  # nothing finished is claimed
    computed = []
    original = tiles.reconstruct

    def counting(*args: object, **kwargs: object) -> object:
        computed.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tiles, "reconstruct", counting)
    resumed = reconstruct_tile(cube, date(2009, 1, 1), date(2009, 12, 31), tmp_path / "a", options)
    assert len(computed) == 3  # blocks of 20 rows over 61: four, the first finished before the kill
    fresh = reconstruct_tile(cube, date(2009, 1, 1), date(2009, 12, 31), tmp_path / "b", options)
    for a, b in zip(resumed, fresh, strict=True):
        for key in ("SR", "SIGMA", "FLAG"):
            name = a.name.replace(".json", f".{key}.tif")
            with rasterio.open(a.parent / name) as x, rasterio.open(b.parent / name) as y:
                np.testing.assert_array_equal(x.read(), y.read())
    shutil.rmtree(tmp_path / "b")


def test_reconstruction_sigma_joins_the_sr_uncertainty(tmp_path: Path) -> None:
    """Items with an SRUNC layer (5 % + 0.003): each month's ARD+ sigma is the reconstruction's own joined in
    quadrature by the mean SR variance of the month's clear observations (all the pixel's where it has none)."""
    folder, tile = write_catalog(tmp_path / "ard", "2009-01-01", "2009-12-31", srunc=True)
    options = ReconstructOptions(minimum=0.0)
    joined = reconstruct_tile(open_cube(folder, tile, "2009-01-01", "2009-12-31", bands=("red", "nir"),
                                        with_sigma=True), date(2009, 1, 1), date(2009, 12, 31), tmp_path / "a", options)
    alone = reconstruct_tile(open_cube(folder, tile, "2009-01-01", "2009-12-31", bands=("red", "nir")),
                             date(2009, 1, 1), date(2009, 12, 31), tmp_path / "b", options)
    cube = open_cube(folder, tile, "2009-07-01", "2009-07-31", bands=("red", "nir"), with_sigma=True).load()
    clear = np.isin(cube.quality.values, (1, 2))
    july = next(i for i, p in enumerate(joined) if ".20090701-" in p.name)

    def sigma(path: Path) -> np.ndarray:
        with rasterio.open(path.with_name(path.name.replace(".json", ".SIGMA.tif"))) as src:
            return src.read().astype(float) / 10_000

    with_sr, without = sigma(joined[july]), sigma(alone[july])
    for k, band in enumerate(("red", "nir")):
        stored = cube[f"{band}_sigma"].values
        np.testing.assert_allclose(stored[clear], 0.05 * cube[band].values[clear] + 0.003, atol=6e-5)
        with np.errstate(all="ignore"):
            level = np.nanmean(np.where(clear, stored**2, np.nan), axis=0)
        seen = np.isfinite(level) & (without[k] > 0)
        assert seen.sum() > 1000
        np.testing.assert_allclose(with_sr[k][seen], np.sqrt(without[k][seen] ** 2 + level[seen]), atol=1.5e-4)
    assert (with_sr >= without - 1e-4).all()


def test_composites_carry_the_sr_uncertainty(tmp_path: Path) -> None:
    """A selecting composite (BAP) takes the chosen observation's SRUNC with its reflectance; the median's sigma
    is that of a median of the period's observations, sqrt(pi/2 * mean variance / n)."""
    folder, tile = write_catalog(tmp_path / "ard", "2009-06-01", "2009-08-31", srunc=True)
    out = tmp_path / "composites"
    for method in ("bap", "median"):
        invoke("composite", "--catalog", str(folder), "--tile", tile, "--from", "2009-06-01", "--to", "2009-08-31",
               "--period", "season", "--method", method, "--bands", "red,nir", "--out", str(out))
    [bap_item] = sorted(out.glob(f"{tile}/BAP.*/*.json"))
    [median_item] = sorted(out.glob(f"{tile}/MEDIAN.*/*.json"))

    def layer(item: Path, key: str) -> np.ndarray:
        with rasterio.open(item.with_name(item.name.replace(".json", f".{key}.tif"))) as src:
            values = src.read().astype(float)
        return np.where(values > 0, values / 10_000, np.nan)

    sr, sigma = layer(bap_item, "SR"), layer(bap_item, "SIGMA")
    chosen = np.isfinite(sr)
    assert chosen.sum() > 1000
    np.testing.assert_allclose(sigma[chosen], 0.05 * sr[chosen] + 0.003, atol=1.5e-4)
    cube = open_cube(folder, tile, "2009-06-01", "2009-08-31", bands=("red", "nir"), with_sigma=True).load()
    taken = np.isin(cube.quality.values, (1, 2)) & np.isfinite(cube.red.values) & np.isfinite(cube.nir.values)
    count = taken.sum(axis=0)
    median_sigma = layer(median_item, "SIGMA")
    for k, band in enumerate(("red", "nir")):
        variance = np.where(taken, cube[f"{band}_sigma"].values ** 2, 0).sum(axis=0)
        with np.errstate(all="ignore"):
            expected = np.sqrt(np.pi / 2 * variance / count**2)
        seen = (count >= 3) & np.isfinite(median_sigma[k])
        assert seen.sum() > 1000
        np.testing.assert_allclose(median_sigma[k][seen], expected[seen], atol=1.5e-4)
