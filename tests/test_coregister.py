"""Co-registration: real images moved by known sub-pixel amounts, across sensors and resolutions, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage
from skimage.transform import AffineTransform, warp
from typer.testing import CliRunner

from musyq.cli import app
from musyq.ard.coregister import Mode, register

from .conftest import DATA

FOLDER = DATA / "openeo-31UFS"
SHIFTS = [(0.3, -0.2), (1.7, 0.45), (-2.25, 1.1), (0.05, -3.3), (0.77, 0.61), (-0.4, 0.9), (2.9, 2.6), (-1.35, -0.05)]
MARGIN = 16


def band(name: str) -> np.ndarray:
    with rasterio.open(FOLDER / f"ref_input_{name}.tif") as dataset:
        values = dataset.read(1).astype(np.float32)
    return np.where(values == 65535, np.nan, values / 10000).astype(np.float32)


def fourier_shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The image's content moved by (dx, dy) pixels, exactly (band-limited)."""
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), (dy, dx))).real.astype(np.float32)


def inner(image: np.ndarray) -> np.ndarray:
    """Away from the borders, where a moved image has content the reference does not."""
    return image[MARGIN:-MARGIN, MARGIN:-MARGIN]


def rmse(errors: list[tuple[float, float]]) -> float:
    values = np.array(errors)
    return float(np.sqrt(np.mean(np.sum(values**2, axis=1))))


def moved_by(image: np.ndarray, dx: float, dy: float, how: str) -> np.ndarray:
    return fourier_shift(image, dx, dy) if how == "fourier" else ndimage.shift(image, (dy, dx), order=3,
                                                                                mode="nearest")


@pytest.mark.parametrize("how", ["fourier", "cubic"])
def test_known_subpixel_shifts_of_a_real_image(how: str) -> None:
    nir = band("S2_B08")
    errors = []
    for dx, dy in SHIFTS:
        found = register(inner(nir), inner(moved_by(nir, dx, dy, how)), (10.0, 10.0))
        errors.append((found.offset_x_px - dx, found.offset_y_px - dy))
        assert found.offset_east_m == pytest.approx(found.offset_x_px * 10, abs=1e-6)
        assert found.offset_north_m == pytest.approx(-found.offset_y_px * 10, abs=1e-6)
        assert not found.flagged and found.rmse_px < 0.2
    # measured: 0.005 px (Fourier), 0.018 px (cubic resampling, which also smooths)
    assert rmse(errors) < (0.01 if how == "fourier" else 0.05)


@pytest.mark.parametrize("how", ["fourier", "cubic"])
def test_across_sensors_landsat8_against_sentinel2(how: str) -> None:
    """Landsat 8 (2020-06-13, 30 m resampled to 10 m) against Sentinel-2 (2019-04-11) on the same grid.

    Different season, sensor and clouds: the two stay within two pixels of each other; moving the Landsat
    image by known amounts moves the estimate by those amounts.
    """
    sentinel, landsat = band("S2_B04"), band("L8_B04")
    base = register(inner(sentinel), inner(landsat), (10.0, 10.0))
    assert abs(base.offset_x_px) < 1.0 and abs(base.offset_y_px) < 2.0
    errors = []
    for dx, dy in SHIFTS:
        found = register(inner(sentinel), inner(moved_by(landsat, dx, dy, how)), (10.0, 10.0))
        errors.append((found.offset_x_px - base.offset_x_px - dx, found.offset_y_px - base.offset_y_px - dy))
    # measured: 0.000 px (Fourier), 0.036 px (cubic resampling, which also smooths)
    assert rmse(errors) < (0.01 if how == "fourier" else 0.05)


def test_local_mode_with_too_few_tie_points_keeps_the_global_offset() -> None:
    """Across sensors on a small image only a few tie windows agree: an affine through them would move the
    centre by tenths of a pixel from one shift to the next (measured 0.47 px RMSE), so the global offset is kept."""
    sentinel, landsat = inner(band("S2_B04")), inner(band("L8_B04"))
    local = register(sentinel, landsat, (10.0, 10.0), Mode.local)
    whole = register(sentinel, landsat, (10.0, 10.0))
    assert any("too few to fit an affine" in note for note in local.notes), local.notes
    assert (local.offset_x_px, local.offset_y_px) == (whole.offset_x_px, whole.offset_y_px)
    assert local.inliers < 12


def test_local_mode_recovers_an_affine_distortion_despite_clouds() -> None:
    nir = band("S2_B08")
    rows, cols = nir.shape
    truth = AffineTransform(scale=(1.0008, 0.9995), rotation=np.radians(0.08), translation=(1.3, -0.7))
    moved = warp(nir, truth, order=3, mode="edge", preserve_range=True).astype(np.float32)
    # a patch of the moved image replaced by texture from elsewhere: the windows over it correlate
    # clearly at a wrong offset, and RANSAC must leave them out
    moved[10:110, 290:390] = moved[140:240, 20:120]
    found = register(nir, moved, (10.0, 10.0), Mode.local)
    assert found.inliers < found.tie_points and found.inliers >= 8
    corners = np.array([[0, 0], [cols, 0], [0, rows], [cols, rows], [cols / 2, rows / 2]], dtype=float)
    # warp(image, truth) samples image at truth(x): content at x in the reference lies at truth^-1(x)
    # in the moved image, so the image -> reference transform is truth itself
    expected = truth(corners)
    a, b, c, d, e, f = found.transform
    recovered = corners @ np.array([[a, d], [b, e]]) + np.array([c, f])
    assert np.abs(recovered - expected).max() < 0.1
    assert found.rmse_px < 0.1


def write(path: Path, data: np.ndarray, transform: Affine, description: str) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="float32", crs="EPSG:32631", transform=transform, nodata=np.nan) as dataset:
        dataset.write(data, 1)
        dataset.descriptions = (description,)
    return path


def test_command_across_resolutions_and_apply(tmp_path: Path) -> None:
    with rasterio.open(FOLDER / "ref_input_S2_B08.tif") as dataset:
        transform = dataset.transform
    nir = band("S2_B08")
    # reference: the same band averaged to 20 m; image: the 10 m band moved by a known amount
    coarse = nir.reshape(nir.shape[0] // 2, 2, nir.shape[1] // 2, 2).mean(axis=(1, 3))
    reference = write(tmp_path / "reference_20m.tif", coarse, transform * Affine.scale(2), "nir")
    image = write(tmp_path / "image.tif", fourier_shift(nir, 1.4, -0.6), transform, "nir")
    out, corrected = tmp_path / "result.json", tmp_path / "corrected.tif"
    result = CliRunner().invoke(app, ["coregister", str(image), "--reference", str(reference), "--out", str(out),
                                      "--apply", str(corrected)])
    assert result.exit_code == 0, result.output
    found = json.loads(out.read_text())
    assert found["offset_x_px"] == pytest.approx(1.4, abs=0.1) and found["offset_y_px"] == pytest.approx(-0.6, abs=0.1)
    assert found["offset_east_m"] == pytest.approx(14.0, abs=1.0) and not found["flagged"]
    again = tmp_path / "again.json"
    result = CliRunner().invoke(app, ["coregister", str(corrected), "--reference", str(image.with_name("x.tif")),
                                      "--out", str(again)])
    assert result.exit_code == 1 and "x.tif" in result.output.replace("\n", "")
    truth = write(tmp_path / "truth.tif", nir, transform, "nir")
    result = CliRunner().invoke(app, ["coregister", str(corrected), "--reference", str(truth), "--out", str(again)])
    assert result.exit_code == 0, result.output
    residual = json.loads(again.read_text())
    # what remains is the error of the estimate against the smoother 20 m reference (about 0.05 of its pixels)
    assert abs(residual["offset_x_px"]) < 0.15 and abs(residual["offset_y_px"]) < 0.15

    elsewhere = write(tmp_path / "elsewhere.tif", nir, transform * Affine.translation(5000, 5000), "nir")
    result = CliRunner().invoke(app, ["coregister", str(image), "--reference", str(elsewhere), "--out",
                                      str(tmp_path / "none.json")])
    assert result.exit_code == 1 and "does not overlap" in result.output.replace("\n", "")
    result = CliRunner().invoke(app, ["coregister", str(image), "--reference", str(truth), "--band", "swir22",
                                      "--out", str(tmp_path / "none.json")])
    assert result.exit_code == 0  # single-band rasters: the one band is the shared one


def test_coregistration_stage_of_the_ard_pipeline(samples: Path, tmp_path: Path) -> None:
    """A reference that places the scene 1.3 pixels east and 0.6 pixels south: the tile is moved onto it."""
    product = samples / "S2A_MSIL1C_20170729_T19UDP_900m"
    common = ["--resolution", "900", "--tile", "19UDP", "--aod", "off"]
    assert CliRunner().invoke(app, ["ard", str(product), "--out", str(tmp_path / "plain"), *common]).exit_code == 0
    plain_toa = next((tmp_path / "plain").glob("19UDP/*/*.TOA.tif"))
    with rasterio.open(plain_toa) as dataset:
        names = list(dataset.descriptions)
        nir = dataset.read(names.index("nir") + 1).astype(np.float32) / 10000
        transform, crs = dataset.transform, dataset.crs
    nir[nir == 0] = np.nan
    reference = tmp_path / "reference.tif"
    with rasterio.open(reference, "w", driver="GTiff", width=nir.shape[1], height=nir.shape[0], count=1,
                       dtype="float32", crs=crs, transform=transform * Affine.translation(1.3, 0.6),
                       nodata=np.nan) as dataset:
        dataset.write(nir, 1)
        dataset.descriptions = ("nir",)
    result = CliRunner().invoke(app, ["ard", str(product), "--out", str(tmp_path / "moved"), *common,
                                      "--coregister-to", str(reference)])
    assert result.exit_code == 0, result.output
    item = json.loads(next((tmp_path / "moved").glob("19UDP/*/*.json")).read_text())
    found = item["properties"]["musyq:coregistration"]
    # the scene's content lies 1.3 px west and 0.6 px north of where the reference has it
    assert found["offset_x_px"] == pytest.approx(-1.3, abs=0.15) and found["offset_y_px"] == pytest.approx(-0.6, abs=0.15)
    assert found["offset_east_m"] == pytest.approx(found["offset_x_px"] * 900) and found["applied"], json.dumps(found)
    moved_toa = next((tmp_path / "moved").glob("19UDP/*/*.TOA.tif"))
    with rasterio.open(moved_toa) as dataset:
        moved = dataset.read(names.index("nir") + 1).astype(np.float32) / 10000
    with rasterio.open(next((tmp_path / "moved").glob("19UDP/*/*.MASK.tif"))) as dataset:
        flags = dataset.read(2)
    assert ((flags & 16) > 0).sum() > 1000
    moved[moved == 0] = np.nan
    with rasterio.open(reference) as dataset:
        on_tile = np.full(moved.shape, np.nan, dtype=np.float32)
        rasterio.warp.reproject(rasterio.band(dataset, 1), on_tile, dst_transform=transform, dst_crs=crs,
                                dst_nodata=np.nan, resampling=rasterio.enums.Resampling.cubic)
    residual = register(on_tile, moved, (900.0, 900.0))
    assert abs(residual.offset_x_px) < 0.15 and abs(residual.offset_y_px) < 0.15
