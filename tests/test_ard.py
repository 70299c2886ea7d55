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
    with rasterio.open(folder / "S2A_MSI.900m.2017210153557.19UDP.001.MASK.tif") as mask:
        np.testing.assert_array_equal(mask.read(1), np.where(valid, 1, 0))
    with rasterio.open(folder / "S2A_MSI.900m.2017210153557.19UDP.001.ANG.tif") as angles:
        sun_zenith = angles.read(2)[valid] / 100
    # 2017-07-29 15:36 UTC at 48.5 N 69.5 W: the sun stands about 34 degrees from the zenith
    assert 30 < sun_zenith.mean() < 38 and np.ptp(sun_zenith) < 3

    item = json.loads(item_path.read_text())
    assert item["stac_version"] == "1.1.0" and item["properties"]["proj:code"] == "EPSG:32619"
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
    items = sorted(out.glob("*/*/*.json"))
    report = (out / "report.html").read_text()
    collection = pystac.Collection.from_file(str(out / "collection.json"))
    linked = list(collection.get_items())
    assert len(linked) == len(items) >= 10
    for item in linked:
        for asset in item.assets.values():
            assert Path(asset.get_absolute_href()).is_file(), asset.href
    assert report.count("data:image/png;base64,") == len(items)
    listed = re.findall(r"<code>([^<]+)</code>", report)
    assert len(listed) >= 3 * len(items) and all((out / name).is_file() for name in listed)


def test_plain_band_stack_with_user_given_sensor_and_time(samples: Path, tmp_path: Path) -> None:
    crop = samples / "S2A_20160112_T18SVG_crop"
    (crop / "s2_B09.tif").unlink()
    output = run("info", str(crop), "--sensor", "S2A", "--datetime", "2016-01-12T15:35:00")
    assert "[exit 0]" in output and "18SVG" in output and "bands absent: B09" in output
    out = tmp_path / "ard"
    output = run("ard", str(crop), "--out", str(out), "--sensor", "S2A", "--datetime", "2016-01-12T15:35:00",
                 "--tile", "18SVG", "--resolution", "30")
    assert "[exit 0]" in output
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
