"""End to end: bundled Level-1 samples -> TOA tiles, COGs, STAC, through the CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pystac
import pystac.validation
import pytest
import rasterio
from odc.stac import load
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate
from typer.testing import CliRunner

from musyq.cli import app

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    return result.output + f"\n[exit {result.exit_code}]"


def test_sentinel2_tile_to_toa_cogs_and_stac(samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "ard"
    product = samples / "S2A_MSIL1C_20170729_T19UDP_900m"
    assert "[exit 0]" in run("ard", str(product), "--out", str(out), "--resolution", "900", "--tile", "19UDP")
    item_path = next(out.glob("19UDP/*/*.json"))
    assert item_path.name == "S2A_MSI.900m.2017210153557.19UDP.001.json"
    folder = item_path.parent
    toa_path = folder / "S2A_MSI.900m.2017210153557.19UDP.001.TOA.tif"
    for tif in folder.glob("*.tif"):
        assert cog_validate(str(tif))[0], tif
    with rasterio.open(toa_path) as toa, rasterio.open(product / "B04.jp2") as red:
        assert toa.descriptions[3] == "red" and toa.count == 13 and toa.dtypes[0] == "uint16"
        assert toa.scales[0] == pytest.approx(1e-4) and toa.nodata == 0
        # the 900 m tile grid equals the input grid, so TOA = DN / 10000 exactly (pre-04.00 baseline)
        dn = red.read(1).astype(int)
        ours = toa.read(4).astype(int)
        # a pixel is data only where every band has data
        valid = np.all([rasterio.open(p).read(1) > 0 for p in sorted(product.glob("B*.jp2"))], axis=0)
        assert valid.mean() > 0.5
        np.testing.assert_array_equal(ours[valid], dn[valid])
        assert (ours[~valid] == 0).all()
    with rasterio.open(folder / "S2A_MSI.900m.2017210153557.19UDP.001.MASK.tif") as mask, \
            rasterio.open(folder / "S2A_MSI.900m.2017210153557.19UDP.001.CLOUDPROB.tif") as probability:
        quality, cloud_probability = mask.read(1), probability.read(1)
    # fill exactly where the data ends; every data pixel gets a class
    np.testing.assert_array_equal(quality == 0, ~valid)
    assert set(np.unique(quality[valid])) <= {1, 2, 3, 4, 5}
    assert (cloud_probability[~valid] == 255).all() and cloud_probability[valid].max() <= 100
    # the probability crosses 50 where a potential cloud becomes cloud; dilation and small-object removal aside
    cloudy = quality == 5
    assert np.median(cloud_probability[cloudy]) >= 50 and np.median(cloud_probability[valid & ~cloudy]) < 50
    with rasterio.open(folder / "S2A_MSI.900m.2017210153557.19UDP.001.ANG.tif") as angles:
        sun_zenith = angles.read(2)[valid] / 100
    # 2017-07-29 15:36 UTC at 48.5 N 69.5 W: the sun stands about 34 degrees from the zenith
    assert 30 < sun_zenith.mean() < 38 and np.ptp(sun_zenith) < 3

    with rasterio.open(folder / "S2A_MSI.900m.2017210153557.19UDP.001.SR.tif") as sr_layer, \
            rasterio.open(toa_path) as toa_layer, \
            rasterio.open(folder / "S2A_MSI.900m.2017210153557.19UDP.001.AOD.tif") as aod_layer:
        assert sr_layer.count == 11 and "wv" not in sr_layer.descriptions and "cirrus" not in sr_layer.descriptions
        sr = sr_layer.read().astype(float) / 1e4
        toa_all = toa_layer.read().astype(float) / 1e4
        aod = aod_layer.read(1)[valid] / 1e4
        toa_by_name = dict(zip(toa_layer.descriptions, toa_all, strict=True))
        sr_by_name = dict(zip(sr_layer.descriptions, sr, strict=True))
    # fill stays fill, data stays data (no wrap-around): SR is 0 exactly where TOA is
    assert ((sr > 0) == valid).all()
    assert 0.0 <= aod.min() and aod.max() <= 1.5
    blue_toa, blue_sr = toa_by_name["blue"][valid], sr_by_name["blue"][valid]
    nir_toa, nir_sr = toa_by_name["nir"][valid], sr_by_name["nir"][valid]
    # removing path radiance darkens blue; over vegetation the NIR brightens (transmittance < 1)
    assert np.median(blue_sr) < np.median(blue_toa) - 0.01
    vegetated = (nir_toa - toa_by_name["red"][valid]) / (nir_toa + toa_by_name["red"][valid]) > 0.5
    assert np.median(nir_sr[vegetated]) > np.median(nir_toa[vegetated])
    with rasterio.open(folder / "S2A_MSI.900m.2017210153557.19UDP.001.SRUNC.tif") as unc_layer:
        assert unc_layer.descriptions == sr_layer.descriptions
        sigma = dict(zip(unc_layer.descriptions, unc_layer.read().astype(float) / 1e4, strict=True))
    assert ((sigma["red"] > 0) == valid).all()
    # at least the 5 % calibration of MSI through the inversion, and the held-out RMSE of the bandpass line to
    # OLI (0.0035 in blue); at most what a bad atmosphere could do
    blue_sigma = sigma["blue"][valid]
    assert (blue_sigma >= 0.0034).all() and np.median(blue_sigma) < 0.03
    assert np.median(sigma["nir"][valid][vegetated] / nir_sr[vegetated]) > 0.05

    item = json.loads(item_path.read_text())
    assert item["stac_version"] == "1.1.0" and item["properties"]["proj:code"] == "EPSG:32619"
    assert item["properties"]["musyq:water_vapour_source"].startswith("from the 945 nm band")
    assert "SR" in item["assets"] and "AOD" in item["assets"] and "uncertainty" in item["assets"]["SRUNC"]["roles"]
    # the core schema ships with pystac (offline); extension schemas would be fetched, so check core only
    pystac.validation.validate_dict({**item, "stac_extensions": []})
    collection = pystac.Collection.from_file(str(out / "collection.json"))
    items = list(collection.get_items())
    cube = load(items, bands=["TOA"], chunks={})
    assert cube.odc.crs == "EPSG:32619" and cube.TOA.shape[-2:] == (122, 122)


def test_landsat_scene_is_cut_into_every_touched_tile(samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "ard"
    product = samples / "LC08_L1TP_016037_20170813_20170814_01_RT_900m"
    output = run("ard", str(product), "--out", str(out), "--resolution", "900")
    assert "[exit 0]" in output and "no angle bands" in output
    tiles = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert "17SNS" in tiles and len(tiles) >= 8
    bt = next(out.glob("17SNS/*/*.BT.tif"))
    with rasterio.open(bt) as dataset:
        kelvin = dataset.read(1)[dataset.read(1) > 0] / 100
    assert 270 < np.median(kelvin) < 320  # a summer afternoon in South Carolina
    # a rerun skips finished tiles
    assert "0 tile(s) written" in run("ard", str(product), "--out", str(out), "--resolution", "900")


def test_bad_inputs_end_with_one_clear_message_and_no_partial_output(samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "ard"
    product = samples / "S2A_MSIL1C_20170729_T19UDP_900m"
    output = run("ard", str(product), "--out", str(out), "--tile", "31UFS", "--resolution", "900")
    assert "[exit 1]" in output and "does not touch tile 31UFS" in output
    assert not list(out.rglob("*.tif")) and not list(out.rglob("*.partial"))
    output = run("info", str(samples / "S2A_20160112_T18SVG_crop"))
    assert "[exit 1]" in output and "--sensor" in output


def test_truncated_band_file_is_named_and_leaves_nothing_behind(samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "ard"
    product = samples / "S2A_MSIL1C_20170729_T19UDP_900m"
    red = product / "B04.jp2"
    red.chmod(0o644)
    with red.open("r+b") as handle:
        handle.truncate(red.stat().st_size // 2)
    output = run("ard", str(product), "--out", str(out), "--resolution", "900", "--tile", "19UDP")
    assert "[exit 1]" in output and "B04.jp2" in output and "cannot read band B04" in output
    assert not list(out.rglob("*.tif")) and not list(out.rglob("*.partial")) and not list(out.rglob("*.json"))


def test_demo_with_a_relative_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    output = run("demo", "--out", "demo-out")
    assert "[exit 0]" in output
    out = tmp_path / "demo-out"
    items = sorted(p for p in out.glob("*/*/*.json") if p.parts[-3] != "order")
    report = (out / "report.html").read_text()
    collection = pystac.Collection.from_file(str(out / "collection.json"))
    linked = list(collection.get_items())
    assert len(linked) == len(items) >= 10
    # and the products of every item, LAI through synthesized red edge on Landsat
    made = pystac.Collection.from_file(str(out / "products" / "collection.json"))
    assert len(list(made.get_items())) == 5 * len(items)
    assert len(list((out / "products").glob("*/*.nc"))) == len(items)
    for item in linked:
        for asset in item.assets.values():
            assert Path(asset.get_absolute_href()).is_file(), asset.href
    assert report.count("data:image/png;base64,") == 2 * len(items)  # reflectance and quality quicklooks
    assert report.count("cloud ") >= len(items)
    listed = re.findall(r"<code>([^<]+)</code>", report)
    assert len(listed) >= 3 * len(items) and all((out / name).is_file() for name in listed)
    # and an order on a local cluster: the 900 m samples' three tiles, ARD, NDVI and a composite each
    assert "order 1: 9 done, 0 failed" in " ".join(output.split())
    assert f"musyqserve--catalog{out}" in "".join(output.split())  # how to open the portal on it
    composites = list(pystac.Collection.from_file(str(out / "order" / "composites" / "collection.json")).get_items())
    assert sorted(i.properties["mgrs:tile"] for i in composites) == ["17SNS", "17SPS", "19UDP"]


def test_plain_band_stack_with_user_given_sensor_and_time(samples: Path, tmp_path: Path) -> None:
    crop = samples / "S2A_20160112_T18SVG_crop"
    (crop / "s2_B09.tif").unlink()
    output = run("info", str(crop), "--sensor", "S2A", "--datetime", "2016-01-12T15:35:00")
    assert "[exit 0]" in output and "18SVG" in output and "bands absent: B09" in output
    out = tmp_path / "ard"
    output = run("ard", str(crop), "--out", str(out), "--sensor", "S2A", "--datetime", "2016-01-12T15:35:00",
                 "--tile", "18SVG", "--resolution", "30")
    assert "[exit 0]" in output
    item = json.loads(next(out.glob("18SVG/*/*.json")).read_text())
    assert item["properties"]["musyq:water_vapour_source"].startswith("default")  # no B09
    toa = next(out.glob("18SVG/*/*.TOA.tif"))
    with rasterio.open(toa) as dataset, rasterio.open(crop / "s2_B02.tif") as blue:
        assert dataset.count == 12
        ours = dataset.read(2, window=dataset.window(*blue.bounds))
        # area averaging keeps the mean reflectance of the covered area
        native = blue.read(1).astype(float)
        inner = ours[1:-1, 1:-1].astype(float)
        assert inner.min() > 0
        assert inner.mean() == pytest.approx(native[15:-15, 15:-15].mean(), rel=0.01)
        # 10 m -> 30 m on the band's own grid: each output pixel is the mean of its 3 x 3 input pixels
        window = dataset.window(*blue.bounds)
        row, col = math.ceil(window.row_off), math.ceil(window.col_off)
        left, top = dataset.xy(row, col, offset="ul")
        source_col, source_row = (round(v) for v in ~blue.transform * (left, top))
        n = 100
        ours = dataset.read(2, window=Window(col, row, n, n)).astype(float)
        block = native[source_row:source_row + 3 * n, source_col:source_col + 3 * n]
        np.testing.assert_array_equal(ours, np.rint(block.reshape(n, 3, n, 3).mean(axis=(1, 3))))


def test_atmosphere_options_on_the_command_line(samples: Path, tmp_path: Path) -> None:
    product = samples / "S2A_MSIL1C_20170729_T19UDP_900m"
    common = ("--resolution", "900", "--tile", "19UDP")
    given = tmp_path / "given"
    output = run("ard", str(product), "--out", str(given), *common, "--aod", "0.3", "--water-vapour", "2.5",
                 "--ozone", "0.35", "--aerosol-model", "maritime", "--elevation", "800")
    assert "[exit 0]" in output
    item = json.loads(next(given.glob("19UDP/*/*.json")).read_text())
    props = item["properties"]
    assert props["musyq:aot550"] == pytest.approx(0.3) and props["musyq:water_vapour"] == pytest.approx(2.5)
    assert props["musyq:aerosol_model"] == "maritime" and props["musyq:ozone"] == 0.35
    off = tmp_path / "off"
    assert "[exit 0]" in run("ard", str(product), "--out", str(off), *common, "--aod", "off")
    item = json.loads(next(off.glob("19UDP/*/*.json")).read_text())
    assert "SR" not in item["assets"] and "AOD" not in item["assets"] and "TOA" in item["assets"]
    for bad, message in ((("--aod", "lots"), "--aod takes 'auto' or a number"),
                         (("--aod", "3"), "outside the tables"),
                         (("--aerosol-model", "desert"), "unknown aerosol model"),
                         (("--aerosol-method", "sky"), "unknown aerosol retrieval")):
        output = run("ard", str(product), "--out", str(tmp_path / "bad"), *common, *bad)
        assert "[exit 1]" in output and message in output, output


def test_thin_dark_target_evidence_falls_back_to_climatology_with_a_flag(samples: Path, tmp_path: Path) -> None:
    """Sentinel-2 19UDP in July: tile 19UEP holds dark forest in about half its blocks (AOD about 0.04, clean
    boreal air), 19UDQ is nearly all cloud, so its aerosol is the climatological 0.15, flagged in the MASK."""
    product = samples / "S2A_MSIL1C_20170729_T19UDP_900m"
    assert "[exit 0]" in run("ard", str(product), "--out", str(tmp_path), "--resolution", "900", "--tile", "19UEP",
                             "--tile", "19UDQ")
    found = {}
    for tile in ("19UEP", "19UDQ"):
        item = json.loads(next(tmp_path.glob(f"{tile}/*/*.json")).read_text())
        with rasterio.open(next(tmp_path.glob(f"{tile}/*/*.MASK.tif"))) as mask:
            flags = mask.read(2)
        found[tile] = (item["properties"]["musyq:aot550"], item["properties"]["musyq:aot550_source"],
                       flags[flags > 0])
    aot, source, flags = found["19UEP"]
    assert source.startswith("dark target") and 0.0 < aot < 0.1 and not (flags & 64).any()
    aot, source, flags = found["19UDQ"]
    assert source.startswith("climatology 0.15") and aot == pytest.approx(0.15) and (flags & 64).all()
