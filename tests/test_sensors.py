from __future__ import annotations

import numpy as np
import pytest

from musyq.core.errors import SensorError
from musyq.io.readers.sentinel2 import parse_product_metadata
from musyq.core.sensors import (
    available_sensors,
    band_average,
    get_sensor,
    solar_irradiance,
    spectral_response,
)
from tests.conftest import DATA

# Published centre wavelengths (um): ESA for MSI, USGS for OLI, CRESDA via Snowy-Dove for GF WFV.
PUBLISHED_CENTRES = {
    ("S2A_MSI", "B02"): 0.4924, ("S2A_MSI", "B04"): 0.6646, ("S2A_MSI", "B8A"): 0.8647, ("S2A_MSI", "B12"): 2.2024,
    ("S2B_MSI", "B02"): 0.4921, ("S2B_MSI", "B12"): 2.1857,
    ("L8_OLI", "B2"): 0.482, ("L8_OLI", "B4"): 0.655, ("L8_OLI", "B5"): 0.865, ("L8_OLI", "B7"): 2.201,
    ("GF1_WFV1", "B1"): 0.483, ("GF1_WFV3", "B3"): 0.665, ("GF6_WFV", "B7"): 0.432, ("GF6_WFV", "B8"): 0.609,
}


def test_every_sensor_file_loads_with_complete_bands() -> None:
    for sensor_id in available_sensors():
        sensor = get_sensor(sensor_id)
        assert sensor.bands, sensor_id
        for band in sensor.bands:
            assert 0.4 < band.center_wavelength < 13, (sensor_id, band)
            assert 0 < band.full_width_half_max < 2.5, (sensor_id, band)
            assert band.resolution in (10, 15, 16, 20, 30, 60, 250, 500), (sensor_id, band)
        if sensor.srf_file:
            srf = spectral_response(sensor_id)
            assert set(srf.band_ids) == {b.id for b in sensor.reflective_bands}
            assert np.allclose(srf.response.max(axis=1), 1.0)


@pytest.mark.parametrize(("sensor_id", "band_id"), list(PUBLISHED_CENTRES))
def test_centre_wavelengths_match_published_values(sensor_id: str, band_id: str) -> None:
    band = get_sensor(sensor_id).band(band_id)
    assert band.center_wavelength == pytest.approx(PUBLISHED_CENTRES[sensor_id, band_id], abs=0.006)


def test_lookup_by_alias_common_name_and_id() -> None:
    assert get_sensor("LC08").id == "L8_OLI"
    assert get_sensor("s2b").band("nir08").id == "B8A"
    assert get_sensor("L9_OLI").band("b5").common_name == "nir08"
    with pytest.raises(SensorError, match="no band 'rededge1'"):
        get_sensor("L8_OLI").band("rededge1")
    with pytest.raises(SensorError, match="unknown sensor"):
        get_sensor("SPOT5")


def test_band_average_of_flat_and_linear_spectra() -> None:
    wavelength = np.arange(350.0, 2600.0)
    flat = band_average("S2A_MSI", wavelength, np.full_like(wavelength, 0.3))
    assert np.allclose(flat, 0.3)
    # a spectrum equal to the wavelength averages to the SRF-weighted centre wavelength
    linear = band_average("L8_OLI", wavelength, wavelength / 1000, bands=("B2", "B5"))
    assert linear == pytest.approx([get_sensor("L8_OLI").band("B2").center_wavelength,
                                    get_sensor("L8_OLI").band("B5").center_wavelength], abs=2e-4)
    many = band_average("GF1_WFV2", wavelength, np.stack([wavelength * 0, wavelength * 0 + 1]))
    assert many.shape == (2, 4) and np.allclose(many, [[0] * 4, [1] * 4])


def test_solar_irradiance_matches_esa_metadata() -> None:
    product = parse_product_metadata((DATA / "ukis-pysat" /
                                      "S2B_MSIL1C_20200406T101559_N0209_R065_T32UPC_20200406T130159_MTD.xml").read_bytes())
    ours = solar_irradiance("S2B_MSI")
    for band, value in product.solar_irradiance.items():
        assert ours[band] == pytest.approx(value, rel=0.003), band


def test_solar_irradiance_of_gaofen_near_published_esun() -> None:
    # CRESDA-style ESUN of GF-1 WFV1 (Gaofen-Batch); other solar spectra differ by 1-2 %
    published = {"B1": 1968.63, "B2": 1849.19, "B3": 1571.46, "B4": 1079.00}
    ours = solar_irradiance("GF1_WFV1")
    for band, value in published.items():
        assert ours[band] == pytest.approx(value, rel=0.02), band
