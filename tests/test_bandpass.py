"""Bandpass adjustment: the derivation reproduces HLS, the shipped table its own held-out statistics, and ARD applies it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from musyq.ard.bandpass import (
    HLS,
    SURFACES,
    VNIR,
    coefficients,
    fit_pair,
    fit_synthesis,
    generate_library,
    pair_bands,
    simulate,
    synthesis,
    table_path,
)
from musyq.cli import app
from musyq.io.output import WATER
from musyq.core.sensors import get_sensor


@pytest.fixture(scope="module")
def spectra() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The library the shipped table was fitted on (``musyq bandpass build`` defaults): land and water."""
    shipped = json.loads(table_path().read_text())["library"]
    return generate_library(shipped["spectra"], shipped["seed"])


@pytest.fixture(scope="module")
def library(spectra: tuple[np.ndarray, dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return spectra[0], spectra[1]["land"]


@pytest.mark.parametrize("source", ["S2A_MSI", "S2B_MSI"])
def test_derived_msi_to_oli_coefficients_match_the_published_hls_ones(
    source: str, library: tuple[np.ndarray, np.ndarray]
) -> None:
    fits = {f.source_band: f for f in fit_pair(get_sensor(source), get_sensor("L8_OLI"), *library)}
    for band, (slope, offset) in HLS[source].items():
        assert fits[band].slope == pytest.approx(slope, abs=0.02), band
        assert fits[band].offset == pytest.approx(offset, abs=0.005), band


def test_shipped_fits_reproduce_their_held_out_spectra(spectra: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    wavelength, surfaces = spectra
    for source, target in (("GF1_WFV1", "L8_OLI"), ("GF6_WFV", "S2A_MSI"), ("L8_OLI", "S2B_MSI")):
        for surface in SURFACES:
            shipped = [f for f in coefficients(source, target) if f.surface == surface]
            again = fit_pair(get_sensor(source), get_sensor(target), wavelength, surfaces[surface], surface=surface)
            assert [f.source_band for f in shipped] == [f.source_band for f in again] and shipped
            for stored, fitted in zip(shipped, again, strict=True):
                assert stored.slope == fitted.slope and stored.offset == fitted.offset
                assert stored.rmse_holdout == pytest.approx(fitted.rmse_holdout, abs=1e-6)
                # the line generalizes: spectra it was not fitted on are reproduced as well as those it was
                assert stored.rmse_holdout < 1.3 * stored.rmse + 1e-4 and stored.rmse_holdout < 0.015
                assert stored.r2 > (0.98 if surface == "land" else 0.8)


@pytest.mark.parametrize("source", ["S2B_MSI", "L8_OLI"])
def test_gaofen6_bands_a_four_band_source_lacks_are_mixed_from_it(
        source: str, spectra: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    """The shipped mixes that make GF-6's red edges, purple and yellow from blue, green, red and nir alone (the
    simulator's truth) are the fit on the shipped library, and reproduce held-out spectra: measured from
    Sentinel-2B 0.0075 and 0.0117 (red edges), 0.0029 (purple and yellow)."""
    wavelength, surfaces = spectra
    shipped = synthesis(source, "GF6_WFV", from_vnir=True)
    again = fit_synthesis(get_sensor(source), get_sensor("GF6_WFV"), wavelength, surfaces["land"], given=VNIR)
    assert [m.target_name for m in shipped] == ["rededge1", "rededge2", "coastal", "yellow"]
    assert shipped == again
    for mix in shipped:
        assert len(mix.weights) == 4 and set(mix.weights) <= {"blue", "green", "red", "nir", "nir08"}
        assert mix.rmse_holdout < (0.016 if mix.target_name == "rededge2" else 0.009), mix


def consistency(source: str, target: str, library: tuple[np.ndarray, np.ndarray],
                surface: str = "land") -> dict[str, tuple[float, float]]:
    """RMSE between the two sensors' bands on held-out library spectra, before and after adjustment."""
    wavelength, spectra = library
    held_out = spectra[np.random.default_rng(2).random(len(spectra)) < 0.2]
    pairs = pair_bands(get_sensor(source), get_sensor(target))
    before = simulate(get_sensor(source), [p[0] for p in pairs], wavelength, held_out)
    truth = simulate(get_sensor(target), [p[1] for p in pairs], wavelength, held_out)
    fits = {f.source_band: f for f in coefficients(source, target) if f.surface == surface}
    out = {}
    for k, (band, _) in enumerate(pairs):
        after = fits[band.id].slope * before[:, k] + fits[band.id].offset
        out[band.id] = (float(np.sqrt(np.mean((before[:, k] - truth[:, k]) ** 2))),
                        float(np.sqrt(np.mean((after - truth[:, k]) ** 2))))
    return out


def test_water_takes_its_own_lines(spectra: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    """Over water the land lines would make Gaofen and Landsat disagree more than unadjusted bands
    (their offsets are as large as dark water's reflectance); the water lines make them agree better.

    Measured on held-out waters (RMSE unadjusted, land lines, water lines): blue 0.00033, 0.00045, 0.00024;
    green 0.0044, 0.0052, 0.0024; red 0.00023, 0.0052, 0.00018; NIR 0.00045, 0.0044, 0.00002.
    """
    water = (spectra[0], spectra[1]["water"])
    land_lines = consistency("GF1_WFV1", "L8_OLI", water, surface="land")
    water_lines = consistency("GF1_WFV1", "L8_OLI", water, surface="water")
    for band in ("B2", "B3", "B4"):
        before, after = water_lines[band]
        assert after < 0.8 * before and after < 0.5 * land_lines[band][1], band
    assert land_lines["B3"][1] > 5 * land_lines["B3"][0]


def test_adjustment_brings_gaofen_onto_landsat_bands(library: tuple[np.ndarray, np.ndarray]) -> None:
    """On held-out spectra the band differences shrink: the consistency gain of musyq's own fits.

    Measured (RMSE before -> after): blue 0.0003 -> 0.0002, green 0.0046 -> 0.0039, red 0.0054 -> 0.0030,
    NIR (broad to narrow) 0.0248 -> 0.0112.
    """
    gain = consistency("GF1_WFV1", "L8_OLI", library)
    assert all(after < before for before, after in gain.values())
    assert gain["B3"][1] < 0.6 * gain["B3"][0] and gain["B4"][1] < 0.6 * gain["B4"][0]


def test_published_hls_lines_on_the_library(library: tuple[np.ndarray, np.ndarray]) -> None:
    """HLS's lines, fitted on Hyperion spectra, judged on PROSAIL spectra: within 0.001 of no adjustment
    where the bands already agree (B01, B02, B8A), better in red and SWIR; musyq's own B08 -> OLI B5 line
    halves the difference of the broad NIR band."""
    gain = consistency("S2A_MSI", "L8_OLI", library)
    assert all(after < before + 0.001 for before, after in gain.values())
    for band in ("B04", "B08", "B11", "B12"):
        assert gain[band][1] < gain[band][0], band
    assert gain["B08"][1] < 0.6 * gain["B08"][0]


def test_pairing_leaves_bands_without_a_partner_alone() -> None:
    pairs = {a.id: b.id for a, b in pair_bands(get_sensor("S2A_MSI"), get_sensor("L8_OLI"))}
    assert pairs == {"B01": "B1", "B02": "B2", "B03": "B3", "B04": "B4", "B08": "B5", "B8A": "B5", "B11": "B6",
                     "B12": "B7"}
    gaofen = {a.id: b.id for a, b in pair_bands(get_sensor("GF1_WFV1"), get_sensor("L8_OLI"))}
    assert gaofen == {"B1": "B2", "B2": "B3", "B3": "B4", "B4": "B5"}


def test_bandpass_stage_of_the_ard_pipeline(samples: Path, tmp_path: Path) -> None:
    product = samples / "S2A_MSIL1C_20170729_T19UDP_900m"
    layers = {}
    for name, target in (("plain", "none"), ("oli", "L8")):
        result = CliRunner().invoke(app, ["ard", str(product), "--out", str(tmp_path / name), "--resolution", "900",
                                          "--tile", "19UDP", "--aod", "0.1", "--water-vapour", "1.0", "--no-nbar",
                                          "--bandpass-to", target])
        assert result.exit_code == 0, result.output
        item = next((tmp_path / name).glob("19UDP/*/*.json"))
        with rasterio.open(next(item.parent.glob("*.SR.tif"))) as sr, \
                rasterio.open(next(item.parent.glob("*.MASK.tif"))) as mask:
            layers[name] = (sr.read().astype(float) / 10000, list(sr.descriptions), mask.read(2),
                            json.loads(item.read_text())["properties"], mask.read(1))
    plain, names, _, _, _ = layers["plain"]
    adjusted, _, flags, properties, codes = layers["oli"]
    assert properties["musyq:bandpass_to"] == "L8_OLI" and "B05" not in properties["musyq:bandpass_bands"]
    valid = flags > 0
    assert (flags[valid] & 32).all() and not (layers["plain"][2][valid] & 32).any()
    water = codes == WATER
    assert 100 < water.sum() < 0.5 * valid.sum()  # the lakes of 19UDP
    lines = {(f.surface, f.source_band): (f.slope, f.offset) for f in coefficients("S2A_MSI", "L8_OLI")}
    for band, published in HLS["S2A_MSI"].items():
        assert lines["land", band] == published
        k = names.index(get_sensor("S2A_MSI").band(band).common_name)
        for surface, where in (("land", valid & ~water & (plain[k] > 0.01)), ("water", water & (plain[k] > 0.01))):
            slope, offset = lines[surface, band]  # away from the 1e-4 floor of the encoding
            np.testing.assert_allclose(adjusted[k][where], slope * plain[k][where] + offset, atol=1.5e-4)
    rededge = names.index("rededge1")
    np.testing.assert_array_equal(adjusted[rededge][valid], plain[rededge][valid])


def test_shipped_endmembers_are_what_the_command_makes(tmp_path: Path) -> None:
    """``musyq bandpass endmembers`` regenerates the aerosol retrieval's vegetation and soil spectra exactly, and
    they look like a canopy (red edge, NIR plateau) and a soil (reflectance rising through the visible)."""
    from musyq.core.sensors import endmember_bands, endmember_spectra

    out = tmp_path / "endmembers.csv"
    result = CliRunner().invoke(app, ["bandpass", "endmembers", "--out", str(out)])
    assert result.exit_code == 0, result.output
    regenerated = np.loadtxt(out, delimiter=",", skiprows=1)
    wavelength, shipped = endmember_spectra()
    np.testing.assert_array_equal(regenerated[:, 0], wavelength)
    np.testing.assert_allclose(regenerated[:, 1:].T, shipped, atol=1e-6)
    vegetation, soil = endmember_bands("S2A_MSI", ("B02", "B03", "B04", "B08"))
    assert vegetation[3] > 8 * vegetation[2] and vegetation[1] > vegetation[0] > vegetation[2] * 1.2
    assert soil[0] < soil[1] < soil[2] < soil[3]
