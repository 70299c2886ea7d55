"""Gaofen WFV Level-1A to 16 m ARD, checked on a simulated product (clearly labelled so in its XML) built by
``musyq simulate`` from real data: the Sentinel-2 surface reflectance iCOR made of a 2019-04-11 scene of Mol,
Belgium (openEO test data) as the truth, the eo-learn Slovenian DEM stretched over it as terrain (664-801 m),
seen 32 degrees off nadir by an outer camera through a 6S atmosphere with AOD 0.3 and the published 2021
gains; the surface has Roy et al.'s BRDF shape, so the truth is its NBAR. Pixels the 10-bit camera clipped
are left out of the truth."""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import point
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds
from typer.testing import CliRunner

from musyq.ard.bandpass import coefficients as band_fits
from musyq.ard.coregister import Mode, register
from musyq.cli import app
from musyq.core.errors import InputError
from musyq.core.grid import get_tile
from musyq.core.scene import RadianceCalibration
from musyq.core.sensors import solar_irradiance
from musyq.io.readers import open_scene
from musyq.io.readers.gaofen import coefficients_for, parse_metadata, read_calibration_table

from .conftest import DATA

SOURCE = DATA / "gaofen-simulation"
SR_BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
AOD = 0.3
ITEM = re.compile(r"^GF1WFV1\.16m\.\d{13}\.31UFS\.001$")


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return " ".join(result.output.split())


@pytest.fixture(scope="module", autouse=True)
def _unpack_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.environ.get("MUSYQ_CACHE")
    os.environ["MUSYQ_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("MUSYQ_CACHE")
    else:
        os.environ["MUSYQ_CACHE"] = previous


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DEM stretched over the truth's extent, as a GeoTIFF."""
    folder = tmp_path_factory.mktemp("inputs")
    heights = np.load(SOURCE / "eo-learn-DEM.npy")[..., 0].astype(np.float32)
    with rasterio.open(SOURCE / "ref_check_icor_S2_B02.tif") as source:
        left, bottom, right, top = source.bounds
        crs = source.crs
    transform = Affine((right - left + 200) / heights.shape[1], 0, left - 100, 0,
                       -(top - bottom + 200) / heights.shape[0], top + 100)
    with rasterio.open(folder / "dem.tif", "w", driver="GTiff", width=heights.shape[1], height=heights.shape[0],
                       count=1, dtype="float32", crs=crs, transform=transform) as dem:
        dem.write(heights, 1)
    return folder


def _composite(truth: Path, out: Path, factor: int = 30) -> Path:
    """The aerosol prior a production run would take, a surface reflectance composite of the period: here
    the truth averaged to 480 m."""
    with rasterio.open(truth) as source:
        shape = (source.count, source.height // factor, source.width // factor)
        data = source.read(out_shape=shape, resampling=Resampling.average)
        profile = source.profile
        profile.update(height=shape[1], width=shape[2],
                       transform=source.transform * Affine.scale(source.width / shape[2], source.height / shape[1]))
        names = source.descriptions
    with rasterio.open(out, "w", **profile) as prior:
        prior.write(data)
        for index, name in enumerate(names, start=1):
            prior.set_band_description(index, name)
    return out


def _simulate(out: Path, inputs: Path, *extra: str) -> dict[str, Path]:
    bands = [f"{name}={SOURCE / f'ref_check_icor_S2_{band}.tif'}" for name, band in SR_BANDS.items()]
    _run("simulate", *bands, "--tile", "31UFS", "--out", str(out), "--dem", str(inputs / "dem.tif"),
         "--aod", str(AOD), "--source-sensor", "S2B_MSI", *extra)
    return {"product": next(out.glob("GF1_WFV1_*_L1A*.tar.gz")), "truth": next(out.glob("*.truth.tif")),
            "dem": next(out.glob("*.dem.tif"))}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> dict[str, Path]:
    return _simulate(tmp_path_factory.mktemp("simulated"), inputs)


def _ard(product: Path, out: Path, dem: Path, *extra: str) -> Path:
    _run("ard", str(product), "--out", str(out), "--resolution", "16", "--dem", str(dem), "--bandpass-to", "none",
         *extra)
    return next(out.glob("31UFS/*/*.SR.tif"))


def _against_truth(sr_path: Path, truth_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The chain's SR and the truth on the truth's window of the tile, NaN where either has no data."""
    with rasterio.open(truth_path) as truth, rasterio.open(sr_path) as sr:
        window = from_bounds(*truth.bounds, sr.transform).round_offsets().round_lengths()
        raw = sr.read(window=window)
        made = np.where(raw == sr.nodata, np.nan, raw * sr.scales[0])
        expected = truth.read().astype(np.float64)
    both = np.isfinite(made).all(axis=0) & np.isfinite(expected).all(axis=0)
    return np.where(both, made, np.nan), np.where(both, expected, np.nan)


def _offset(made: np.ndarray, expected: np.ndarray) -> float:
    found = register(expected[3], made[3], (16.0, 16.0), Mode.global_)
    return float(np.hypot(found.offset_x_px, found.offset_y_px))


def test_the_calibration_table_reproduces_the_published_coefficients(tmp_path: Path) -> None:
    table = read_calibration_table(None)
    gains = [g for g, _ in coefficients_for("GF1_WFV1", 2017, 4, table, "t")[0]]
    assert gains == [0.2165, 0.1685, 0.1354, 0.1507]  # CRESDA's 2017 notice
    assert [g for g, _ in coefficients_for("GF1_WFV4", 2020, 4, table, "t")[0]] == [0.2522, 0.2029, 0.1528, 0.1031]
    gf6 = coefficients_for("GF6_WFV", 2019, 8, table, "t")[0]
    assert [g for g, _ in gf6] == [0.0705, 0.0567, 0.0516, 0.0322, 0.0532, 0.0453, 0.0786, 0.0585]
    assert all(b == 0 for _, b in gf6)
    # 2013 is published as L = DN / A + L0: DN 300 must give a radiance of tens, not thousands
    (gain, bias), *_ = coefficients_for("GF1_WFV1", 2013, 4, table, "t")[0]
    assert gain == pytest.approx(1 / 5.851) and bias == 0.0039
    assert 30 < gain * 300 + bias < 80
    with pytest.raises(InputError, match="no calibration of GF1_WFV2 for 2030"):
        coefficients_for("GF1_WFV2", 2030, 4, table, "t")
    with pytest.raises(InputError, match="no calibration for camera GF2_PMS1"):
        coefficients_for("GF2_PMS1", 2020, 4, table, "t")
    user = tmp_path / "calibration.json"
    user.write_text(json.dumps({"sensors": {"GF1_WFV2": {"2030": {"gain": [0.2, 0.19, 0.18, 0.17]}}}}))
    assert coefficients_for("GF1_WFV2", 2030, 4, read_calibration_table(user), user)[0][3] == (0.17, 0.0)
    assert coefficients_for("GF1_WFV2", 2017, 4, read_calibration_table(user), user)[0][0] == (0.2097, 0.0)


def test_the_reader_recovers_every_metadata_field(simulated: dict[str, Path], tmp_path: Path) -> None:
    scene = open_scene(simulated["product"])
    assert scene.reader == "gaofen-l1a" and scene.sensor.id == "GF1_WFV1" and scene.crs == "EPSG:32631"
    assert scene.product_id.startswith("GF1_WFV1_E5.3_N51.3_20210411_L1A")
    # CenterTime is written in Beijing time; the sun zenith of the XML says so, and the scene is in UTC
    assert abs(scene.acquired - datetime(2021, 4, 11, 10, 8, 56)) < timedelta(seconds=1)
    assert "Beijing" in str(scene.metadata["time"])
    assert scene.metadata["calibration"] == "GF1_WFV1 2021 table"
    irradiance = solar_irradiance("GF1_WFV1")
    calibrations = [s.calibration for s in scene.bands]
    assert calibrations == [RadianceCalibration(g, 0.0, irradiance[b]) for g, b in
                            zip((0.1722, 0.1496, 0.1227, 0.1262), ("B1", "B2", "B3", "B4"), strict=True)]
    assert scene.metadata["image_width"] > 200 and scene.metadata["strips"] == 1
    assert [s.saturated for s in scene.bands] == [1023.0] * 4  # 10-bit DN
    # `musyq info` shows the gains a user's table lays over the shipped ones
    user = tmp_path / "gains.json"
    user.write_text(json.dumps({"sensors": {"GF1_WFV1": {"2021": {"gain": [0.31, 0.32, 0.33, 0.34]}}}}))
    text = _run("info", str(simulated["product"]), "--calibration", str(user))
    assert "gains.json over the shipped table" in text
    assert "gain=0.31" in text and "gain=0.34" in text and "gain=0.1722" not in text
    # the per-pixel angles follow the RPC model's lines of sight: 32 degrees off nadir at the centre, as the XML says
    centre = scene.footprint.to_crs(scene.crs).centroid.coords[0]
    box = GeoBox((3, 3), Affine(16, 0, centre[0] - 24, 0, -16, centre[1] + 24), scene.crs)
    angles = scene.angles.on(box)
    assert float(angles.view_zenith[1, 1]) == pytest.approx(float(scene.metadata["view_zenith_xml"]), abs=0.1)
    assert float(angles.view_azimuth[1, 1]) == pytest.approx(float(scene.metadata["view_azimuth_xml"]), abs=0.5)
    assert float(angles.sun_zenith[1, 1]) == pytest.approx(float(scene.metadata["sun_zenith_xml"]), abs=0.1)
    # the same product unpacked reads the same
    with tarfile.open(simulated["product"]) as bundle:
        bundle.extractall(tmp_path / "folder", filter="data")
    again = open_scene(tmp_path / "folder")
    assert again.acquired == scene.acquired and again.footprint.geom.equals(scene.footprint.geom)
    xml = next((tmp_path / "folder").glob("*.xml"))
    meta = parse_metadata(xml, xml.name)
    assert (meta.satellite, meta.camera, meta.level, meta.pixel_bits) == ("GF1", "WFV1", "LEVEL1A", 10)
    assert meta.corners is not None and scene.footprint.contains(point(*np.mean(meta.corners, axis=0), "EPSG:4326"))


def test_the_chain_returns_the_surface_within_0_01_and_the_geometry_within_0_3_px(
        simulated: dict[str, Path], inputs: Path, tmp_path: Path) -> None:
    prior = _composite(simulated["truth"], tmp_path / "prior.tif")
    sr = _ard(simulated["product"], tmp_path / "ard", simulated["dem"], "--aod-prior", str(prior))
    assert ITEM.match(sr.parent.name) and sr.name == f"{sr.parent.name}.SR.tif"
    with rasterio.open(sr) as dataset:
        assert dataset.shape == (6863, 6863) and dataset.res == (16.0, 16.0)
        assert dataset.transform == get_tile("31UFS").geobox(16).affine
    made, expected = _against_truth(sr, simulated["truth"])
    both = np.isfinite(made[0])
    assert both.sum() > 40_000
    for k in range(4):
        error = made[k][both] - expected[k][both]
        assert abs(error.mean()) < 0.01 and np.sqrt(np.mean(error**2)) < 0.01, (k, error.mean())
    assert _offset(made, expected) < 0.3
    item = json.loads(next(sr.parent.glob("*.json")).read_text())
    assert abs(item["properties"]["musyq:aot550"] - AOD) < 0.1
    assert item["properties"]["musyq:aot550_source"].startswith("surface prior")
    assert item["properties"]["view:incidence_angle"] == pytest.approx(32.0, abs=0.5)
    for layer in ("TOA", "AOD", "ANG", "MASK"):
        assert (sr.parent / f"{sr.parent.name}.{layer}.tif").exists()
    # the 10-bit camera clips bright roofs: those pixels carry the saturation flag, and they are where the
    # simulation could not keep the truth
    with rasterio.open(str(sr).replace(".SR.", ".MASK.")) as mask, rasterio.open(simulated["truth"]) as truth:
        window = from_bounds(*truth.bounds, mask.transform).round_offsets().round_lengths()
        processing = mask.read(2, window=window)
        lost = ~np.isfinite(truth.read(1))
    flagged = (processing & 128) > 0
    with tarfile.open(simulated["product"]) as bundle:
        image = next(m for m in bundle.getmembers() if m.name.endswith(".tiff"))
        bundle.extract(image, tmp_path / "raw", filter="data")
    with rasterio.open(tmp_path / "raw" / image.name) as raw:
        dn = raw.read()
    clipped = float((dn == 1023).any(axis=0).sum() / (dn > 0).all(axis=0).sum())
    share = float(flagged.sum() / (processing > 0).sum())
    assert 0.01 < clipped < 0.1 and 0.3 * clipped < share < 1.2 * clipped, (clipped, share)
    assert lost[flagged].mean() > 0.95


def test_gaofen6_eight_bands_in_three_strips(inputs: Path, tmp_path: Path) -> None:
    """A simulated GF-6 WFV product: 12-bit DN in three column strips, each with its RPB, and one XML; the four
    bands a Sentinel-2 crop lacks (red edges, purple, yellow) mixed from its blue, green, red and nir over the
    spectral library. Measured: all 8 bands within 0.0051 bias and 0.0065 RMSE, geometry 0.0 px."""
    bands = [f"{name}={SOURCE / f'ref_check_icor_S2_{band}.tif'}" for name, band in SR_BANDS.items()]
    out = tmp_path / "simulated"
    _run("simulate", *bands, "--tile", "31UFS", "--out", str(out), "--dem", str(inputs / "dem.tif"),
         "--aod", str(AOD), "--source-sensor", "S2B_MSI", "--sensor", "GF6_WFV", "--strips", "3")
    product = next(out.glob("GF6_WFV_*_L1A*.tar.gz"))
    with tarfile.open(product) as bundle:
        names = sorted(bundle.getnames())
    stem = product.name.removesuffix(".tar.gz")
    assert names == sorted([f"{stem}.xml", *(f"{stem}-{n}.{x}" for n in (1, 2, 3) for x in ("tiff", "rpb"))])
    scene = open_scene(product)
    assert scene.sensor.id == "GF6_WFV" and scene.metadata["strips"] == 3 and scene.metadata["pixel_bits"] == 12
    assert [s.band.id for s in scene.bands] == [f"B{k}" for k in range(1, 9)]
    assert [s.saturated for s in scene.bands] == [4095.0] * 8
    published = [g for g, _ in coefficients_for("GF6_WFV", 2021, 8, read_calibration_table(None), "t")[0]]
    assert [s.calibration.gain for s in scene.bands] == published  # type: ignore[union-attr]

    truth = next(out.glob("*.truth.tif"))
    prior = _composite(truth, tmp_path / "prior.tif")
    sr = _ard(product, tmp_path / "ard", next(out.glob("*.dem.tif")), "--aod-prior", str(prior))
    assert re.match(r"^GF6WFV\.16m\.\d{13}\.31UFS\.001$", sr.parent.name)
    made, expected = _against_truth(sr, truth)
    both = np.isfinite(made[0])
    assert both.sum() > 40_000
    with rasterio.open(truth) as dataset:
        assert dataset.descriptions == ("blue", "green", "red", "nir", "rededge1", "rededge2", "coastal", "yellow")
    for k in range(8):
        error = made[k][both] - expected[k][both]
        assert abs(error.mean()) < 0.01 and np.sqrt(np.mean(error**2)) < 0.01, (k, error.mean())
    assert _offset(made, expected) < 0.3


def _desert(tmp_path: Path, *extra: str) -> Path:
    """A GF-1 WFV1 product simulated over 25 km of the Sahara under AOD 0.5 (Sen2Cor's SR of 29RKH as truth)."""
    with rasterio.open(DATA / "sen2cor-29RKH" / "S2A_29RKH_20200219_L2A_200m.tif") as stack:
        window = Window(200, 100, 128, 128)
        profile = stack.profile | {"count": 1, "height": 128, "width": 128,
                                   "transform": stack.window_transform(window)}
        bands = []
        for index, name in enumerate(("blue", "green", "red", "nir"), start=1):
            path = tmp_path / f"{name}.tif"
            with rasterio.open(path, "w", **profile) as single:
                single.write(stack.read(index, window=window), 1)
            bands.append(f"{name}={path}")
    out = tmp_path / "simulated"
    _run("simulate", *bands, "--tile", "29RKH", "--out", str(out), "--aod", "0.5", "--source-sensor", "S2A_MSI",
         "--datetime", "2020-02-19T11:30:00", *extra)
    return out


@pytest.mark.parametrize("prior_error", [0.0, 0.03])
def test_a_bright_desert_takes_its_aerosol_from_a_bright_surface_prior(prior_error: float, tmp_path: Path) -> None:
    """GF-1 WFV1 over the Sahara (Sen2Cor's surface reflectance of 29RKH as truth: blue 0.15, red 0.33, no
    vegetation, no dark pixel) under AOD 0.5. The endmember fit has nothing to fit and the climatology's 0.15
    leaves red and nir 0.025 too dark; the prior's bright surface gives the aerosol. Measured: AOD 0.47 and
    RMSE at most 0.0017 with the prior as it is; 0.58 and at most 0.0100 (nir) with a prior 3 % too bright."""
    out = _desert(tmp_path)
    truth = next(out.glob("*.truth.tif"))
    prior = _composite(truth, tmp_path / "prior.tif")
    with rasterio.open(prior, "r+") as dataset:
        dataset.write((dataset.read() * (1 + prior_error)).astype(dataset.dtypes[0]))
    _run("ard", str(next(out.glob("*.tar.gz"))), "--out", str(tmp_path / "ard"), "--resolution", "16",
         "--bandpass-to", "none", "--aod-prior", str(prior))
    sr = next((tmp_path / "ard").glob("29RKH/*/*.SR.tif"))
    item = json.loads(next(sr.parent.glob("*.json")).read_text())
    assert "over bright surfaces in 100%" in item["properties"]["musyq:aot550_source"]
    assert abs(item["properties"]["musyq:aot550"] - 0.5) < (0.05 if prior_error == 0 else 0.15)
    made, expected = _against_truth(sr, truth)
    both = np.isfinite(made[0])
    assert both.sum() > 40_000
    for k in range(4):
        error = made[k][both] - expected[k][both]
        assert np.sqrt(np.mean(error**2)) < (0.003 if prior_error == 0 else 0.012), (k, error.mean())


def test_a_prior_in_the_scenes_own_view(tmp_path: Path) -> None:
    """A Lambertian desert looks the same from 32 degrees off nadir as from nadir: a prior of it is already in
    the scene's view, and `--aod-prior-view scene` takes it so; read as an NBAR product it is put into the view by
    Roy et al.'s BRDF shape and the aerosol moves. Measured: AOD 0.49 (scene) against 0.84 (nadir); a view
    other than nadir or scene is refused."""
    out = _desert(tmp_path, "--lambertian")
    prior = _composite(next(out.glob("*.truth.tif")), tmp_path / "prior.tif")
    found = {}
    for view in ("scene", "nadir"):
        _run("ard", str(next(out.glob("*.tar.gz"))), "--out", str(tmp_path / view), "--resolution", "16",
             "--bandpass-to", "none", "--aod-prior", str(prior), "--aod-prior-view", view, "--tile", "29RKH")
        item = json.loads(next((tmp_path / view).glob("29RKH/*/*.json")).read_text())
        found[view] = item["properties"]["musyq:aot550"]
    assert abs(found["scene"] - 0.5) < 0.03 and abs(found["scene"] - 0.5) < abs(found["nadir"] - 0.5) - 0.03, found
    result = CliRunner().invoke(app, ["ard", str(next(out.glob("*.tar.gz"))), "--out", str(tmp_path / "bad"),
                                      "--aod-prior", str(prior), "--aod-prior-view", "oblique"])
    assert result.exit_code == 1 and "--aod-prior-view takes 'nadir' or 'scene'" in " ".join(result.output.split())


def test_a_biased_rpc_model_is_corrected_by_coregistration(inputs: Path, tmp_path: Path) -> None:
    simulated = _simulate(tmp_path / "biased", inputs, "--rpc-bias", "1.5", "-2.0")
    made, expected = _against_truth(_ard(simulated["product"], tmp_path / "plain", simulated["dem"],
                                         "--aod", str(AOD)), simulated["truth"])
    assert 2.0 < _offset(made, expected) < 3.0
    sr = _ard(simulated["product"], tmp_path / "fixed", simulated["dem"], "--aod", str(AOD), "--coregister-to",
              str(simulated["truth"]), "--coregister-max-rmse", "0.8")
    made, expected = _against_truth(sr, simulated["truth"])
    assert _offset(made, expected) < 0.3
    registration = json.loads(next(sr.parent.glob("*.json")).read_text())["properties"]["musyq:coregistration"]
    assert registration["applied"] and registration["rmse_px"] < 0.8


def test_column_strips_as_gaofen_6_delivers_them_make_one_image(inputs: Path, tmp_path: Path) -> None:
    simulated = _simulate(tmp_path / "strips", inputs, "--strips", "3")
    with tarfile.open(simulated["product"]) as bundle:
        names = sorted(bundle.getnames())
    assert [n for n in names if n.endswith(".tiff")] == [n.replace(".rpb", ".tiff") for n in names
                                                         if n.endswith(".rpb")]
    assert sum(n.endswith(".tiff") for n in names) == 3 and sum(n.endswith(".xml") for n in names) == 1
    scene = open_scene(simulated["product"])
    assert scene.metadata["strips"] == 3 and len(scene.bands[0].parts) == 2
    made, expected = _against_truth(_ard(simulated["product"], tmp_path / "ard", simulated["dem"], "--aod", str(AOD)),
                                    simulated["truth"])
    both = np.isfinite(made[0])
    assert both.sum() > 40_000  # no seams left empty between the strips
    assert np.sqrt(np.nanmean((made[3] - expected[3]) ** 2)) < 0.01 and _offset(made, expected) < 0.3


def _damaged(simulated: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "product"
    with tarfile.open(simulated["product"]) as bundle:
        bundle.extractall(folder, filter="data")
    return folder


@pytest.mark.parametrize(("damage", "message"), [
    ("xml", "is not readable XML"),
    ("rpb", "has no RPC file beside it"),
    ("camera", "camera GF1 WFV9 is not a Gaofen WFV camera"),
    ("year", "no calibration of GF1_WFV1 for 2031"),
    ("tiff", "is not a readable GeoTIFF"),
    ("archive", "is not a complete tar archive"),
])
def test_a_damaged_product_gets_a_clear_error_and_leaves_nothing(simulated: dict[str, Path], tmp_path: Path,
                                                                 damage: str, message: str) -> None:
    folder = _damaged(simulated, tmp_path)
    xml = next(folder.glob("*.xml"))
    tiff = next(folder.glob("*.tiff"))
    target: Path = folder
    if damage == "xml":
        xml.write_text(xml.read_text()[:400])
    elif damage == "rpb":
        tiff.with_suffix(".rpb").unlink()
    elif damage == "camera":
        xml.write_text(xml.read_text().replace("<SensorID>WFV1<", "<SensorID>WFV9<"))
    elif damage == "year":
        xml.write_text(re.sub(r"2021-04-1[01]", "2031-04-11", xml.read_text()))
    elif damage == "tiff":
        data = tiff.read_bytes()
        tiff.write_bytes(data[: len(data) // 2])
    else:
        target = tmp_path / simulated["product"].name
        data = simulated["product"].read_bytes()
        target.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["ard", str(target), "--out", str(out), "--resolution", "16", "--aod", "0.3"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and message in text, text
    assert "Traceback" not in text
    assert not out.exists() or not list(out.rglob("*.tif"))
    shutil.rmtree(folder)


def test_cross_calibration_recovers_a_gain_error_within_0_5_percent(inputs: Path, tmp_path: Path) -> None:
    """A 5 % gain error put into the simulated DN, against a simulated nadir Sentinel-2B of the same surface
    half an hour later: the error found, per band, against the same product without it."""
    bands = [f"{name}={SOURCE / f'ref_check_icor_S2_{band}.tif'}" for name, band in SR_BANDS.items()]
    common = ["--tile", "31UFS", "--dem", str(inputs / "dem.tif"), "--aod", "0.2", "--source-sensor", "S2B_MSI"]
    _run("simulate", *bands, *common, "--sensor", "S2B_MSI", "--datetime", "2021-04-11T10:40:00", "--out",
         str(tmp_path / "s2"))
    reference = next((tmp_path / "s2").glob("*_simulated_TOA.tif"))
    ratios = {}
    for error in ("0", "0.05"):
        out = tmp_path / f"gf{error}"
        _run("simulate", *bands, *common, "--datetime", "2021-04-11T10:09:00", "--gain-error", error, "--out", str(out))
        text = _run("crosscal", str(next(out.glob("*.tar.gz"))), "--reference", str(reference), "--sensor", "S2B_MSI",
                    "--datetime", "2021-04-11T10:40:00", "--dem", str(next(out.glob("*.dem.tif"))), "--resolution",
                    "64", "--out", str(out / "gains.json"))
        assert "B1 vs B02: reads" in text
        table = json.loads((out / "gains.json").read_text())
        ratios[error] = {b["band"]: b["ratio"] for b in table["crosscal"]["bands"]}
        assert set(ratios[error]) == {"B1", "B2", "B3", "B4"}
        published = [g for g, _ in coefficients_for("GF1_WFV1", 2021, 4, read_calibration_table(None), "t")[0]]
        assert table["sensors"]["GF1_WFV1"]["2021"]["gain"] == pytest.approx(
            [g / ratios[error][b] for g, b in zip(published, ("B1", "B2", "B3", "B4"), strict=True)], rel=1e-4)
        assert all(b["pixels"] > 1000 and b["r2"] > 0.99 for b in table["crosscal"]["bands"])
    for band in ("B1", "B2", "B3", "B4"):
        assert ratios["0.05"][band] / ratios["0"][band] == pytest.approx(1.05, abs=0.005), band
        # what is left without an error is the band adjustment's model: the site's two-member spectrum
        # against the library lines the simulation used
        assert abs(ratios["0"][band] - 1) < 0.03, band


def test_gaofen_tiles_join_sentinel2_and_landsat_in_one_cube(simulated: dict[str, Path], inputs: Path,
                                                             tmp_path: Path) -> None:
    """The same surface seen by GF-1 WFV1, a nadir Sentinel-2B and a nadir Landsat 8 on three days, each through
    `musyq ard` (bandpass to OLI, as HLS): `musyq cube` takes the three on the 16 m grid of 31UFS and they
    agree with each other and with the truth in OLI bands."""
    bands = [f"{name}={SOURCE / f'ref_check_icor_S2_{band}.tif'}" for name, band in SR_BANDS.items()]
    catalog = tmp_path / "ard"
    _run("ard", str(simulated["product"]), "--out", str(catalog), "--resolution", "16", "--dem",
         str(simulated["dem"]), "--aod", str(AOD))
    for sensor, short, when in (("S2B_MSI", "S2B", "2021-04-13T10:40:00"), ("L8_OLI", "L8", "2021-04-15T10:30:00")):
        _run("simulate", *bands, "--tile", "31UFS", "--dem", str(inputs / "dem.tif"), "--aod", str(AOD),
             "--source-sensor", "S2B_MSI", "--sensor", sensor, "--datetime", when, "--out", str(tmp_path / short))
        _run("ard", str(next((tmp_path / short).glob("*_simulated_TOA.tif"))), "--sensor", short, "--datetime", when,
             "--out", str(catalog), "--tile", "31UFS", "--resolution", "16", "--aod", str(AOD), "--dem",
             str(inputs / "dem.tif"))
    store = tmp_path / "cube.zarr"
    text = _run("cube", "--catalog", str(catalog), "--tile", "31UFS", "--from", "2021-04-01", "--to", "2021-04-30",
                "--bands", "blue,green,red,nir", "--out", str(store))
    assert "3 dates from GF1_WFV1, L8_OLI, S2B_MSI" in text and "6863 x 6863 px" in text
    cube = xr.open_zarr(store)
    assert list(cube.sensor.values) == ["GF1_WFV1", "S2B_MSI", "L8_OLI"]
    with rasterio.open(next(catalog.glob("31UFS/GF1WFV1.16m.*/*.SR.tif"))) as sr, \
            rasterio.open(simulated["truth"]) as truth:
        assert sr.transform == Affine(16, 0, 600_000, 0, -16, 5_700_000) and sr.shape == (6863, 6863)
        window = from_bounds(*truth.bounds, sr.transform).round_offsets().round_lengths()
        gf_nir = sr.read(4, window=window)
        gf_truth = truth.read().astype(np.float64)
    rows, cols = window.toslices()
    part = cube.isel(y=rows, x=cols).load()
    np.testing.assert_array_equal(np.nan_to_num(part.nir.values[0]), gf_nir.astype(np.float32) / np.float32(10_000))
    # the truth in OLI bands, as every item was adjusted to
    oli = {f.target_band: f for f in band_fits("GF1_WFV1", "L8_OLI") if f.surface == "land"}
    in_oli = np.stack([gf_truth[k] * oli[b].slope + oli[b].offset for k, b in enumerate(("B2", "B3", "B4", "B5"))])
    # every pixel with data: the 4-band mask takes much of this hazy scene for cloud (see the mask's tests)
    seen_by_all = (part.quality.values > 0).all(axis=0) & np.isfinite(in_oli).all(axis=0)
    assert seen_by_all.sum() > 40_000  # the oblique GF image covers a rotated square inside the truth
    for name, truth_band in zip(("blue", "green", "red", "nir"), in_oli, strict=True):
        seen = part[name].values[:, seen_by_all]
        assert np.isfinite(seen).all(), name
        for index, sensor in enumerate(part.sensor.values):
            bias = float(np.mean(seen[index] - truth_band[seen_by_all]))
            assert abs(bias) < 0.005, (name, sensor, bias)
        spread = np.sqrt(np.mean((seen - seen.mean(axis=0)) ** 2, axis=1))
        assert (spread < 0.01).all(), (name, spread)
