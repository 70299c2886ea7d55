"""DN -> TOA against the golden files of ukis-pysat (computed with USGS and ESA formulas)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from musyq.io.readers.landsat import parse_mtl
from musyq.io.readers.odl import read_metadata_file
from musyq.io.readers.sentinel2 import parse_product_metadata
from musyq.core.scene import RescaledReflectance, ScaledReflectance, ThermalCalibration
from musyq.ard.toa import calibrate
from tests.conftest import DATA

UKIS = DATA / "ukis-pysat"
LANDSAT = {
    "LT05_L1TP_193024_20050516_20161127_01_T1": ("B1", "B2", "B3", "B4", "B5", "B6", "B7"),
    "LE07_L1TP_193024_20100420_20161215_01_T1": ("B1", "B2", "B3", "B4", "B5", "B6_VCID_1", "B6_VCID_2", "B7"),
    "LC08_L1TP_193024_20200509_20200509_01_RT": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"),
}


def read(name: str) -> np.ndarray:
    with rasterio.open(UKIS / name) as dataset:
        return dataset.read()


@pytest.mark.parametrize("product", list(LANDSAT))
def test_landsat_toa_and_brightness_temperature_match_golden(product: str) -> None:
    meta = parse_mtl(read_metadata_file(UKIS / f"{product}_MTL.txt"), UKIS / product)
    dn, golden = read(f"{product}.tif"), read(f"{product}_toa.tif")
    sun_zenith = 90.0 - meta.sun_elevation
    for index, band in enumerate(LANDSAT[product]):
        if band in meta.thermal:
            calibration = ThermalCalibration(*meta.radiance[band], *meta.thermal[band])
        else:
            calibration = RescaledReflectance(*meta.reflectance[band])
        ours = calibrate(dn[index].astype(np.float32), calibration, sun_zenith, 1.0)
        tolerance = 1e-3 if isinstance(calibration, ThermalCalibration) else 1e-5  # kelvin at float32 precision
        np.testing.assert_allclose(ours, golden[index], atol=tolerance, rtol=0, err_msg=f"{product} {band}")


@pytest.mark.parametrize("product", [
    "S2B_MSIL1C_20200406T101559_N0209_R065_T32UPC_20200406T130159",
    "S2B_MSIL1C_20220615T101559_N0400_R065_T32UPC_20220615T122549",
])
def test_sentinel2_toa_matches_golden_across_processing_baselines(product: str) -> None:
    info = parse_product_metadata((UKIS / f"{product}_MTD.xml").read_bytes())
    with rasterio.open(UKIS / f"{product}.tif") as dataset:
        dn, nodata = dataset.read().astype(np.float32), dataset.nodata
    golden = read(f"{product}_toa.tif")
    for index, band in enumerate(("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                                  "B11", "B12")):
        values = np.where(dn[index] == nodata, np.nan, dn[index]) if nodata is not None else dn[index]
        ours = calibrate(values, ScaledReflectance(info.quantification, info.offsets[band]), 0.0, 1.0)
        valid = np.isfinite(ours) & (golden[index] > -1e30)
        assert valid.sum() > 0
        np.testing.assert_allclose(ours[valid], golden[index][valid], atol=1e-5, rtol=0, err_msg=band)
    expected_offset = -1000.0 if "N0400" in product else 0.0
    assert set(info.offsets.values()) == {expected_offset}
