"""BRDF normalization: published check values, real swath geometry, and the NBAR stage of ``musyq ard``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.transform import from_origin
from typer.testing import CliRunner

from musyq.core.angles import EphemerisAngles
from musyq.ard.brdf import (
    Coefficients,
    KernelGrids,
    brdf,
    c_factor,
    li_sparse,
    nbar_sun_zenith,
    normalize_band,
    overpass_local_time,
    ross_thick,
    roy_coefficients,
)
from musyq.cli import app
from musyq.io.readers.landsat import read_track
from musyq.io.readers.odl import find_value, read_metadata_file
from musyq.core.sensors import get_sensor

from .conftest import DATA

RED = Coefficients(0.1690, 0.0574, 0.0227)
NIR = Coefficients(0.3093, 0.1535, 0.0330)


def test_kernels_and_c_factors_match_the_published_check_values() -> None:
    assert float(ross_thick(30.0, 0.0, 0.0)) == pytest.approx(-0.031443, abs=1e-6)
    assert float(li_sparse(30.0, 0.0, 0.0)) == pytest.approx(-0.698222, abs=1e-6)
    # Roy et al. (2016) red coefficients; relative azimuth 30 is near backscatter, 150 near forward scatter
    assert float(c_factor(RED, 35.0, 8.0, 30.0, 35.0)) == pytest.approx(0.96164, abs=1e-5)
    assert float(c_factor(RED, 35.0, 8.0, 150.0, 35.0)) == pytest.approx(1.03911, abs=1e-5)
    assert float(c_factor(RED, 50.0, 0.0, 0.0, 40.0)) == pytest.approx(1.04844, abs=1e-5)
    # the kernels are reciprocal: sun and view may swap
    assert float(li_sparse(20.0, 45.0, 70.0)) == pytest.approx(float(li_sparse(45.0, 20.0, 70.0)), abs=1e-12)
    assert float(ross_thick(20.0, 45.0, 70.0)) == pytest.approx(float(ross_thick(45.0, 20.0, 70.0)), abs=1e-12)


def test_band_coefficients_follow_roy_and_the_hls_band_mapping() -> None:
    s2 = get_sensor("S2A_MSI")
    assert roy_coefficients(s2.band("B8A")) == roy_coefficients(s2.band("B08")) == NIR
    assert roy_coefficients(s2.band("B01")) == roy_coefficients(s2.band("B02"))  # coastal takes blue, as HLS
    assert roy_coefficients(s2.band("B10")) is None and roy_coefficients(s2.band("B09")) is None
    yellow = roy_coefficients(get_sensor("GF6_WFV").band("B8"))  # 609 nm: between green and red
    assert yellow is not None and 0.1306 < yellow.iso < 0.1690


def test_standard_sun_follows_the_landsat_and_sentinel2_overpass_times() -> None:
    for latitude, landsat, sentinel in ((0.0, 10.183, 10.500), (45.0, 10.736, 11.081), (60.0, 11.147, 11.515)):
        assert overpass_local_time("landsat-8", latitude) == pytest.approx(landsat, abs=2e-3)
        assert overpass_local_time("sentinel-2", latitude) == pytest.approx(sentinel, abs=2e-3)
    # the standard zenith is the mean over both overpasses; above 81.3 degrees the observed one serves
    midsummer = nbar_sun_zenith(45.0, 0.0, datetime(2021, 6, 21, 10), 99.0)
    assert 24.0 < midsummer < 27.0
    assert nbar_sun_zenith(82.0, 10.0, datetime(2021, 6, 21, 10), 61.5) == 61.5


@pytest.fixture(scope="module")
def landsat9_swath() -> tuple[np.ndarray, float]:
    """The real sun and view geometry of Landsat 9 112/081 (2022-02-09) on a 1 km grid over the whole scene."""
    ang = DATA / "landsat-metadata" / "LC09_L1TP_112081_20220209_20220209_02_T1_ANG.txt"
    ul_x, ul_y = find_value(read_metadata_file(ang), "UL_CORNER")
    geobox = GeoBox((234, 232), Affine(1000.0, 0, ul_x, 0, -1000.0, ul_y), "EPSG:32650")
    angles = EphemerisAngles(datetime(2022, 2, 9, 2, 5, 20), read_track(ang)).on(geobox)
    centre = geobox.extent.centroid.to_crs("EPSG:4326").coords[0]
    zenith = nbar_sun_zenith(centre[1], centre[0], datetime(2022, 2, 9, 2, 5, 20), float(np.mean(angles.sun_zenith)))
    return angles.values, zenith


def test_swath_edges_change_and_nadir_keeps_only_the_sun_term(landsat9_swath: tuple[np.ndarray, float]) -> None:
    angles, zenith = landsat9_swath
    sun_azimuth, sun_zenith, view_azimuth, view_zenith = angles
    reflectance = np.full(view_zenith.shape, 0.3, dtype=np.float32)
    nbar, _ = normalize_band(reflectance.copy(), get_sensor("L9_OLI").band("B5"), KernelGrids.from_angles(angles, zenith))
    factor = nbar / reflectance
    # the coarse kernel grid reproduces the exact c-factor everywhere
    exact = c_factor(NIR, sun_zenith, view_zenith, view_azimuth - sun_azimuth, zenith)
    assert np.abs(factor - exact).max() < 2e-4
    track = view_zenith < 0.2  # the ground track (the scene is never seen closer than 0.1 degree to nadir)
    sun_only = brdf(NIR, zenith, 0.0, 0.0) / brdf(NIR, sun_zenith[track], 0.0, 0.0)
    assert track.sum() >= 20
    np.testing.assert_allclose(factor[track], sun_only, atol=1.2e-3)  # 0.2 degree off nadir is worth 0.1 %
    # at the swath edges (8 degrees off nadir) the view term moves NIR by several percent either way: the
    # edge that looks back towards the sun (hot-spot side) is darkened, the forward-scatter edge brightened
    edges = view_zenith > 7.5
    backward = edges & (np.cos(np.radians(view_azimuth - sun_azimuth)) > 0)
    forward = edges & (np.cos(np.radians(view_azimuth - sun_azimuth)) < 0)
    middle = float(np.median(factor[track]))
    assert np.median(factor[backward]) < middle - 0.02 and np.median(factor[forward]) > middle + 0.01


def test_nadir_geometry_at_the_standard_sun_is_left_unchanged() -> None:
    with rasterio.open(DATA / "openeo-31UFS" / "ref_check_icor_S2_B04.tif") as source:
        red = (source.read(1).astype(np.float32) / 10000)[:64, :64]
    angles = np.stack([np.full(red.shape, 150.0), np.full(red.shape, 38.0), np.zeros(red.shape),
                       np.zeros(red.shape)]).astype(np.float32)
    nbar, _ = normalize_band(red.copy(), get_sensor("S2A_MSI").band("B04"), KernelGrids.from_angles(angles, 38.0))
    np.testing.assert_allclose(nbar, red, rtol=1e-6)


def ard(product: Path, out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(app, ["ard", str(product), "--out", str(out), "--resolution", "900", "--tile", "19UDP",
                                      "--aod", "0.1", "--water-vapour", "1.0", "--bandpass-to", "none", *extra])
    assert result.exit_code == 0, result.output
    return next(out.glob("19UDP/*/*.json"))


def read_layer(item_path: Path, layer: str) -> tuple[np.ndarray, tuple[str, ...]]:
    with rasterio.open(next(item_path.parent.glob(f"*.{layer}.tif"))) as dataset:
        return dataset.read(), tuple(d or "" for d in dataset.descriptions)


def test_nbar_stage_of_the_ard_pipeline(samples: Path, tmp_path: Path) -> None:
    product = samples / "S2A_MSIL1C_20170729_T19UDP_900m"
    plain = ard(product, tmp_path / "plain", "--no-nbar")
    normalized = ard(product, tmp_path / "nbar")
    (sr_plain, names), (sr_nbar, _) = read_layer(plain, "SR"), read_layer(normalized, "SR")
    angles = read_layer(normalized, "ANG")[0].astype(float) / 100
    masks = read_layer(normalized, "MASK")[0], read_layer(plain, "MASK")[0]
    item = json.loads(normalized.read_text())["properties"]
    zenith = item["musyq:nbar_solar_zenith"]
    assert "musyq:nbar_solar_zenith" not in json.loads(plain.read_text())["properties"]
    # 48.5 N on 29 July: between the Landsat 8 (10:45) and Sentinel-2 (11:09 local) suns
    assert 30.0 < zenith < 36.0
    valid = masks[0][0] > 0
    assert (masks[0][1][valid] == 1 | 2 | 4).all() and (masks[1][1][valid] == 1 | 2).all()
    sun_zenith = angles[1][valid]  # no view metadata in this sample: seen at nadir
    bright = sr_plain[:, valid] > 1000  # where the 1e-4 quantization is below 0.1 %
    for k, name in enumerate(names):
        coefficients = roy_coefficients(get_sensor("S2A_MSI").band(name))
        assert coefficients is not None
        expected = brdf(coefficients, zenith, 0.0, 0.0) / brdf(coefficients, sun_zenith, 0.0, 0.0)
        ratio = sr_nbar[k, valid].astype(float) / np.maximum(sr_plain[k, valid], 1)
        np.testing.assert_allclose(ratio[bright[k]], expected[bright[k]], atol=2e-3)


def test_per_pixel_brdf_parameters_on_another_grid(samples: Path, tmp_path: Path) -> None:
    """Red iso/vol/geo on a geographic grid, a volume term growing eastwards: the red NBAR follows it."""
    prior = tmp_path / "brdf.tif"
    west, north, step = -72.0, 50.0, 0.05
    columns, rows = 120, 60
    vol = np.tile(np.linspace(0.0, 0.3, columns, dtype=np.float32), (rows, 1))
    stack = np.stack([np.full_like(vol, 0.15), vol, np.full_like(vol, 0.02)])
    with rasterio.open(prior, "w", driver="GTiff", width=columns, height=rows, count=3, dtype="float32",
                       crs="EPSG:4326", transform=from_origin(west, north, step, step), nodata=-1) as dataset:
        dataset.write(stack)
        dataset.descriptions = ("red_iso", "red_vol", "red_geo")
    product = samples / "S2A_MSIL1C_20170729_T19UDP_900m"
    plain = ard(product, tmp_path / "plain", "--no-nbar")
    normalized = ard(product, tmp_path / "prior", "--brdf-prior", str(prior))
    (sr_plain, names), (sr_nbar, _) = read_layer(plain, "SR"), read_layer(normalized, "SR")
    quality = read_layer(normalized, "MASK")[0]
    angles = read_layer(normalized, "ANG")[0].astype(float) / 100
    properties = json.loads(normalized.read_text())["properties"]
    assert properties["musyq:brdf_source"].startswith("per-pixel parameters from brdf.tif on 100%")
    valid = quality[0] > 0
    assert (quality[1][valid] & 8).all()
    with rasterio.open(next(normalized.parent.glob("*.SR.tif"))) as dataset:
        rows_, cols_ = np.nonzero(valid)
        xs, ys = rasterio.transform.xy(dataset.transform, rows_, cols_)
        lon, _ = rasterio.warp.transform(dataset.crs, "EPSG:4326", xs, ys)
    expected_vol = np.interp(lon, west + step * (np.arange(columns) + 0.5), vol[0])
    red = names.index("red")
    local = Coefficients(0.15, 0.0, 0.02)
    zenith = properties["musyq:nbar_solar_zenith"]
    sun = angles[1][valid]
    expected = ((local.iso + expected_vol * ross_thick(zenith, 0, 0) + local.geo * li_sparse(zenith, 0, 0))
                / (local.iso + expected_vol * ross_thick(sun, 0, 0) + local.geo * li_sparse(sun, 0, 0)))
    bright = sr_plain[red, valid] > 1000
    ratio = sr_nbar[red, valid].astype(float) / np.maximum(sr_plain[red, valid], 1)
    np.testing.assert_allclose(ratio[bright], expected[bright], atol=3e-3)
    # the other bands keep Roy's fixed coefficients
    nir = names.index("nir")
    roy = brdf(NIR, zenith, 0.0, 0.0) / brdf(NIR, sun, 0.0, 0.0)
    bright_nir = sr_plain[nir, valid] > 1000
    np.testing.assert_allclose((sr_nbar[nir, valid].astype(float) / np.maximum(sr_plain[nir, valid], 1))[bright_nir],
                               roy[bright_nir], atol=2e-3)
