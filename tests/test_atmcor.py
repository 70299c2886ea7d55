"""Atmospheric correction against independent truths: polynomial interpolation, SMAC, and two
other correctors (iCOR, SMAC) on a real Sentinel-2 crop."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from musyq.ard.atmcor import (
    RADIATIVE_TRANSFER_ERROR,
    Atmosphere,
    _cubic_weights,
    coefficients,
    surface_reflectance,
    toa_reflectance,
)
from musyq.ard.lut import interpolation_rms, load_table
from musyq.core.sensors import get_sensor
from musyq.ard.surface import AtmosphereOptions, correct_tile

from .conftest import DATA
from .smac import read_coefficients, smac_inverse

CROP = DATA / "openeo-31UFS"


def test_cubic_interpolation_weights_reproduce_cubics_on_an_uneven_grid() -> None:
    nodes = np.array([0.0, 0.1, 0.25, 0.45, 0.7, 1.0, 1.5])
    x = np.linspace(0, 1.5, 97)
    index, weights = _cubic_weights(nodes, x)
    cubic = lambda t: 0.3 - 1.2 * t + 0.8 * t**2 - 0.25 * t**3  # noqa: E731
    np.testing.assert_allclose((cubic(nodes)[index] * weights).sum(axis=-1), cubic(x), atol=1e-12)


def test_inversion_undoes_the_forward_model() -> None:
    table = load_table("S2B_MSI")
    coef = coefficients(table, "B02", Atmosphere(0.3, 2.0, 0.3), 40.0, 5.0, 100.0)
    surface = np.linspace(0, 0.8, 9)
    np.testing.assert_allclose(surface_reflectance(toa_reflectance(surface, coef), coef), surface, atol=1e-12)


def test_smac_reference_implementation_reproduces_its_published_value() -> None:
    coefficients_b02 = read_coefficients(CROP / "smac" / "Coef_S2A_CONT_B02.dat")
    assert smac_inverse(0.2, 45, 360, 5, 0, 1013, 0.1, 0.3, 0.3, coefficients_b02) == pytest.approx(0.1621434247, abs=1e-9)


@pytest.mark.parametrize("band", ["B02", "B03", "B04", "B08", "B8A", "B11", "B12"])
def test_tables_agree_with_smac(band: str) -> None:
    """SMAC claims 2-3 % accuracy against 6S; the tables must agree with it within 0.01."""
    smac = read_coefficients(CROP / "smac" / f"Coef_S2A_CONT_{band}.dat")
    table = load_table("S2A_MSI")
    worst = 0.0
    for sza, vza, raa, aot, vapour in [(30, 3, 40, 0.05, 0.5), (45, 8, 120, 0.1, 1.5), (55, 5, 170, 0.2, 2.5),
                                       (35, 10, 90, 0.3, 1.0), (60, 2, 10, 0.15, 3.0)]:
        coef = coefficients(table, band, Atmosphere(aot, vapour, 0.3, "continental"), sza, vza, raa)
        for toa in (0.05, 0.1, 0.2, 0.35):
            ours = float(surface_reflectance(toa, coef))
            theirs = smac_inverse(toa, sza, raa, vza, 0, 1013.25, aot, 0.3, vapour, smac)
            worst = max(worst, abs(ours - theirs))
    assert worst < 0.01, worst


def _read(name: str) -> np.ndarray:
    with rasterio.open(CROP / name) as src:
        return src.read(1).astype(np.float64)


def _crop_toa() -> tuple[tuple, np.ndarray, np.ndarray, np.ndarray]:
    sensor = get_sensor("S2A_MSI")
    ids = ("B02", "B03", "B04", "B08", "B8A", "B09", "B11")
    bands = tuple(sensor.band(b) for b in ids)
    dn = np.stack([_read(f"ref_input_S2_{b}.tif") for b in ids])
    toa = np.where(dn == 65535, np.nan, dn / 10000).astype(np.float32)
    angles = np.stack([_read(f"ref_input_S2_{n}.tif") for n in
                       ("sunAzimuthAngles", "sunZenithAngles", "viewAzimuthMean", "viewZenithMean")]).astype(np.float32)
    valid = np.isfinite(toa).all(axis=0)
    return bands, toa, angles, valid


def _clear(toa: np.ndarray) -> np.ndarray:
    """Clear land and water: not bright (cloud), not in deep shadow."""
    blue, nir = toa[0], toa[3]
    return np.isfinite(toa).all(axis=0) & (blue < 0.14) & (nir > 0.02)


def test_real_crop_agrees_with_icor_and_smac() -> None:
    """Same atmosphere as the references (AOD 0.14, ozone 0.33 cm; vapour as each used)."""
    bands, toa, angles, valid = _crop_toa()
    table = load_table("S2A_MSI")
    clear = _clear(toa)
    assert clear.mean() > 0.6
    report = []
    for reference, vapour in (("icor", float(np.median(_read("ref_check_icor_S2_CWV.tif")) / 100)), ("smac", 0.3)):
        result = correct_tile(table, bands, toa, angles, valid, 10.0,
                              AtmosphereOptions(aot550=0.14, water_vapour=vapour, ozone=0.33))
        for k, band in enumerate(("B02", "B03", "B04", "B08")):
            theirs = _read(f"ref_check_{reference}_S2_{band}.tif") / 10000
            usable = clear & (theirs < 3.0)  # the references wrap a few bright pixels to ~6.5
            ours = result.reflectance[result.bands.index(get_sensor("S2A_MSI").band(band))][usable]
            difference = ours - theirs[usable]
            report.append((reference, band, difference.mean(), np.sqrt(np.mean(difference**2))))
    print("\nreference band mean-difference RMSE")
    for row in report:
        print(f"{row[0]:5s} {row[1]} {row[2]:+.4f} {row[3]:.4f}")
    for reference, band, mean, rmse in report:
        assert abs(mean) < 0.01 and rmse < 0.015, (reference, band, mean, rmse)


def test_water_vapour_from_b09_matches_icor() -> None:
    bands, toa, angles, valid = _crop_toa()
    result = correct_tile(load_table("S2A_MSI"), bands, toa, angles, valid, 10.0, AtmosphereOptions(aot550=0.14))
    icor = _read("ref_check_icor_S2_CWV.tif") / 100
    ours = result.water_vapour
    print(f"\nwater vapour: musyq {ours:.3f} g/cm2, iCOR {np.median(icor):.3f}")
    assert result.notes["water_vapour"].startswith("from the 945 nm band")
    assert abs(ours - float(np.median(icor))) < 0.3


def test_endmember_retrieval_agrees_with_icor_on_the_real_crop() -> None:
    """Without a 2.2 um band (the crop has B11, not B12) the default retrieval is the endmember fit, the
    method iCOR uses: within 0.05 of iCOR's AOD (measured 0.159 against 0.14), and the SR it gives within 0.01
    of iCOR's in every band."""
    bands, toa, angles, valid = _crop_toa()
    clear = _clear(toa)
    vapour = float(np.median(_read("ref_check_icor_S2_CWV.tif")) / 100)
    result = correct_tile(load_table("S2A_MSI"), bands, toa, angles, valid, 10.0,
                          AtmosphereOptions(water_vapour=vapour, ozone=0.33), clear=clear)
    retrieved = float(np.nanmedian(result.aot550))
    print(f"\nendmember AOD {retrieved:.3f} (iCOR 0.14); {result.notes['aot550']}")
    assert result.notes["aot550"].startswith("endmember fit") and not result.aot_assumed
    assert abs(retrieved - 0.14) < 0.05
    for band in ("B02", "B03", "B04", "B08"):
        theirs = _read(f"ref_check_icor_S2_{band}.tif") / 10000
        usable = clear & (theirs < 3.0)
        ours = result.reflectance[result.bands.index(get_sensor("S2A_MSI").band(band))][usable]
        assert abs(float(np.mean(ours - theirs[usable]))) < 0.01, band


def test_bands_too_few_for_any_retrieval_fall_back_to_climatology() -> None:
    """Blue and red alone: neither the dark target nor the endmember fit can run, so the AOD is the flagged
    climatology, with a warning; asking for a method that cannot run is an error naming the bands."""
    from musyq.core.errors import MusyqError

    bands, toa, angles, valid = _crop_toa()
    table = load_table("S2A_MSI")
    with pytest.warns(UserWarning, match="AOD 0.15 assumed"):
        result = correct_tile(table, (bands[0], bands[2]), toa[[0, 2]], angles, valid, 10.0, AtmosphereOptions())
    assert result.aot_assumed and result.notes["aot550"].startswith("climatology 0.15")
    assert float(np.nanmax(np.abs(result.aot550 - 0.15))) < 1e-6
    with pytest.raises(MusyqError, match="blue, green, red, nir"):
        correct_tile(table, (bands[0], bands[2]), toa[[0, 2]], angles, valid, 10.0,
                     AtmosphereOptions(aerosol_method="endmember"))
    with pytest.raises(MusyqError, match="no 2.2 um band"):
        correct_tile(table, bands, toa, angles, valid, 10.0, AtmosphereOptions(aerosol_method="dark-target"))


def test_endmember_retrieval_recovers_the_aod_of_a_simulated_scene() -> None:
    """TOA simulated with the tables from vegetation-soil mixtures (with 3 % spectral noise) at an AOD that
    changes across the scene: the retrieval finds it block by block, in any sensor's bands, Gaofen's too."""
    from musyq.core.sensors import endmember_bands

    rng = np.random.default_rng(4)
    for sensor_id in ("S2A_MSI", "GF1_WFV1"):
        sensor, table = get_sensor(sensor_id), load_table(sensor_id)
        bands = tuple(sensor.band(n) for n in ("blue", "green", "red", "nir"))
        members = endmember_bands(sensor_id, tuple(b.id for b in bands))
        shape = (240, 480)
        cover = rng.uniform(0.5, 1.0, shape)
        brightness = rng.uniform(0.6, 1.4, shape)
        surface = brightness[None] * (cover[None] * members[0][:, None, None]
                                      + (1 - cover[None]) * members[1][:, None, None])
        surface *= rng.normal(1.0, 0.03, surface.shape)
        aot = np.where(np.arange(shape[1]) < 240, 0.1, 0.4)[None, :] * np.ones(shape)
        toa = np.stack([toa_reflectance(surface[k], coefficients(table, b.id, Atmosphere(aot, 1.5, 0.3), 35.0, 4.0,
                                                                  40.0)) for k, b in enumerate(bands)])
        angles = np.stack([np.full(shape, v, dtype=np.float32) for v in (140.0, 35.0, 100.0, 4.0)])
        result = correct_tile(table, bands, toa.astype(np.float32), angles, np.ones(shape, bool), 100.0,
                              AtmosphereOptions(water_vapour=1.5))
        assert result.notes["aot550"].startswith("endmember fit in 100%"), result.notes
        print(f"\n{sensor_id}: {np.median(result.aot550[:, :100]):.3f} {np.median(result.aot550[:, -100:]):.3f}")
        np.testing.assert_allclose(result.aot550[:, :100], 0.1, atol=0.02)
        np.testing.assert_allclose(result.aot550[:, -100:], 0.4, atol=0.02)


def test_aerosol_from_a_surface_prior_recovers_the_references_aod() -> None:
    """Gaofen-style retrieval: with iCOR's surface reflectance (made at AOD 0.14, in the scene's own view) as the
    prior, the retrieved AOD is the one iCOR used."""
    bands, toa, angles, valid = _crop_toa()
    prior = {name: (_read(f"ref_check_icor_S2_{band}.tif") / 10000).astype(np.float32)
             for name, band in (("blue", "B02"), ("red", "B04"))}
    clear = _clear(toa)
    for layer in prior.values():
        layer[~clear] = np.nan
    vapour = float(np.median(_read("ref_check_icor_S2_CWV.tif")) / 100)
    result = correct_tile(load_table("S2A_MSI"), bands, toa, angles, valid, 10.0,
                          AtmosphereOptions(water_vapour=vapour, ozone=0.33, prior_at_nadir=False), prior)
    retrieved = float(np.nanmedian(result.aot550))
    print(f"\nAOD from the iCOR surface prior: {retrieved:.3f} (iCOR used 0.14); {result.notes['aot550']}")
    assert result.notes["aot550"].startswith("surface prior")
    assert abs(retrieved - 0.14) < 0.05


def test_dark_target_recovers_the_aod_of_a_simulated_scene() -> None:
    """TOA simulated with the tables from a vegetated surface that obeys the dark-target relations:
    the retrieval must find the AOD it was simulated with, block by block."""
    from musyq.ard.aerosol import dark_vegetation_surface
    from musyq.ard.lut import scattering_angle

    table = load_table("L8_OLI")
    sensor = get_sensor("L8_OLI")
    rng = np.random.default_rng(3)
    shape = (240, 480)
    swir = rng.uniform(0.02, 0.05, shape)
    nir = rng.uniform(0.35, 0.45, shape)
    # canopies green enough (NDVI_SWIR above 0.75) that every pixel has the same red/SWIR slope: the relations
    # then hold for each block's mean as they do pixel by pixel
    blue, red = dark_vegetation_surface(swir, (nir - swir) / (nir + swir), scattering_angle(35.0, 4.0, 40.0))
    surface = {"B2": blue, "B4": red, "B5": nir, "B7": swir, "B1": blue, "B3": 0.4 * swir, "B6": 1.6 * swir}
    left = np.arange(shape[1])[None, :] < 240  # AOD 0.1 on the left half, 0.45 on the right
    angles = np.stack([np.full(shape, 140.0), np.full(shape, 35.0), np.full(shape, 100.0), np.full(shape, 4.0)])
    bands = tuple(sensor.band(b) for b in ("B1", "B2", "B3", "B4", "B5", "B6", "B7"))

    def simulate(band: str, aot: float) -> np.ndarray:
        return toa_reflectance(surface[band], coefficients(table, band, Atmosphere(aot, 1.5, 0.3), 35.0, 4.0, 40.0))

    toa = np.stack([np.where(left, simulate(b.id, 0.1), simulate(b.id, 0.45)) for b in bands]).astype(np.float32)
    result = correct_tile(table, bands, toa, angles.astype(np.float32), np.ones(shape, bool), 100.0,
                          AtmosphereOptions(water_vapour=1.5))
    assert result.notes["aot550"].startswith("dark target in 100%")
    # away from the step (smoothed over about a block), the AOD is found within 0.02
    np.testing.assert_allclose(result.aot550[:, :100], 0.1, atol=0.02)
    np.testing.assert_allclose(result.aot550[:, -100:], 0.45, atol=0.02)
    red = result.reflectance[result.bands.index(sensor.band("B4"))]
    np.testing.assert_allclose(red[:, :100], surface["B4"][:, :100], atol=0.003)


def test_water_and_cloud_stay_finite_and_encode_without_wrapping() -> None:
    from musyq.io.output import encode_reflectance

    bands, toa, angles, valid = _crop_toa()
    result = correct_tile(load_table("S2A_MSI"), bands, toa, angles, valid, 10.0, AtmosphereOptions(aot550=0.4))
    blue_toa, nir_toa = toa[0], toa[3]
    water = valid & (nir_toa < 0.04)
    cloud = valid & (blue_toa > 0.25)
    assert water.sum() > 500 and cloud.sum() > 500
    assert np.isfinite(result.reflectance[:, valid]).all()
    encoded = encode_reflectance(result.reflectance)
    # negative water-leaving reflectance (overcorrection at a high AOD) clamps to the smallest value, not to fill
    assert (encoded[:, valid] >= 1).all() and (encoded[:, ~valid] == 0).all()
    blue_sr = result.reflectance[result.bands.index(get_sensor("S2A_MSI").band("B02"))]
    # bright cloud tops stay bright and bounded (a Lambertian surface under the cloud is not what they are)
    assert (blue_sr[cloud] > 0.2).all() and (blue_sr[cloud] < 1.5 * blue_toa[cloud]).all()


def test_sr_uncertainty_covers_the_differences_to_icor_and_smac() -> None:
    """With the endmember AOD (0.159 against the references' 0.14) the SR sigma (calibration, the AOD's
    expected error, table interpolation) must bracket the differences to iCOR and SMAC at least as often as
    one sigma claims (68 %), without being vacuous: the blue sigma stays under 0.02."""
    bands, toa, angles, valid = _crop_toa()
    clear = _clear(toa)
    vapour = float(np.median(_read("ref_check_icor_S2_CWV.tif")) / 100)
    result = correct_tile(load_table("S2A_MSI"), bands, toa, angles, valid, 10.0,
                          AtmosphereOptions(water_vapour=vapour, ozone=0.33), clear=clear)
    print("\nreference band  median sigma  RMS difference  within 1 sigma")
    for reference in ("icor", "smac"):
        for band in ("B02", "B03", "B04", "B08"):
            theirs = _read(f"ref_check_{reference}_S2_{band}.tif") / 10000
            usable = clear & (theirs < 3.0)
            k = result.bands.index(get_sensor("S2A_MSI").band(band))
            difference = result.reflectance[k][usable] - theirs[usable]
            sigma = result.uncertainty[k][usable]
            within = float(np.mean(np.abs(difference) <= sigma))
            print(f"{reference:5s}     {band}   {np.median(sigma):.4f}        {np.sqrt(np.mean(difference**2)):.4f}"
                  f"          {within:.3f}")
            assert within >= 0.68, (reference, band, within)
            assert np.median(sigma) < 0.02
    given = correct_tile(load_table("S2A_MSI"), bands, toa, angles, valid, 10.0,
                         AtmosphereOptions(aot550=0.159, water_vapour=vapour, ozone=0.33), clear=clear)
    blue = result.bands.index(get_sensor("S2A_MSI").band("B02"))
    # a given AOD carries no aerosol term: the retrieval's sigma is larger where the aerosol matters most
    assert np.nanmedian(result.uncertainty[blue]) > 1.3 * np.nanmedian(given.uncertainty[blue])


def test_calibration_term_matches_monte_carlo_on_the_real_crop() -> None:
    """Perturb the real crop's TOA by the MSI calibration sigma (5 %, one draw per pixel and trial): the spread
    of the retrieved SR matches the analytic calibration term (AOD given, so only calibration and the small
    interpolation and radiative-transfer terms remain) within 5 %."""
    bands, toa, angles, valid = _crop_toa()
    table = load_table("S2A_MSI")
    options = AtmosphereOptions(aot550=0.14, water_vapour=1.0, ozone=0.33)
    base = correct_tile(table, bands, toa, angles, valid, 10.0, options)
    rng = np.random.default_rng(3)
    trials = []
    for _ in range(40):
        noisy = (toa * (1 + 0.05 * rng.standard_normal(toa.shape))).astype(np.float32)
        trials.append(correct_tile(table, bands, noisy, angles, valid, 10.0, options).reflectance)
    spread = np.std(np.stack(trials), axis=0)
    interpolation = interpolation_rms("S2A_MSI")
    model = RADIATIVE_TRANSFER_ERROR * base.reflectance
    analytic = np.sqrt(np.maximum(base.uncertainty**2 - interpolation**2 - model**2, 0))
    for band in ("B02", "B04", "B08", "B11"):
        k = base.bands.index(get_sensor("S2A_MSI").band(band))
        ratio = np.nanmedian(spread[k][valid] / analytic[k][valid])
        print(f"{band}: Monte Carlo / analytic {ratio:.3f}")
        assert abs(ratio - 1) < 0.05, (band, ratio)
