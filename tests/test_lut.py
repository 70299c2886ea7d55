"""The lookup tables: the shipped ones are what ``musyq lut build`` makes, and ``lut check`` measures them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from musyq.ard import sixs
from musyq.cli import app
from musyq.ard.lut import (
    AEROSOL_MODELS,
    AOT550,
    AZIMUTH,
    WAVELENGTHS_UM,
    ZENITH,
    load_table,
    run_at_reference_wavelengths,
    table_path,
)

runner = CliRunner()


def test_lut_build_reproduces_the_shipped_table(tmp_path: Path) -> None:
    """With the shipped scattering table, a sensor's build runs only its band-integrated gas cases."""
    shipped = table_path("GF1_WFV1").parent
    out = tmp_path / "tables"
    out.mkdir()
    (out / "scattering.npz").write_bytes((shipped / "scattering.npz").read_bytes())
    result = runner.invoke(app, ["lut", "build", "--sensor", "GF1_WFV1", "--out", str(out), "--cache",
                                 str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    ours, packaged = load_table("GF1_WFV1", out), load_table("GF1_WFV1")
    assert ours.bands == packaged.bands == ("B1", "B2", "B3", "B4")
    for name in ("path", "rayleigh", "transmittance", "spherical_albedo", "gas_water", "gas_ozone", "gas_mixed",
                 "molecular_path", "elevated_transmittance", "elevated_spherical_albedo", "aerosol_phase",
                 "extinction_ratio"):
        np.testing.assert_allclose(getattr(ours, name), getattr(packaged, name), rtol=1e-6, err_msg=name)
    # blue scatters more than NIR; transmittance falls with sun zenith; vapour absorbs in the NIR band only
    assert (ours.path[0][:, 0] > ours.path[3][:, 0]).all()  # molecular scattering falls as 1/wavelength^4
    assert (np.diff(ours.transmittance, axis=-1) < 0).all()
    assert ours.gas_water[3, 1, -1] < 0.95 < ours.gas_water[0, 1, -1]


def test_lut_check_reports_round_trip_errors() -> None:
    result = runner.invoke(app, ["lut", "check", "--sensor", "GF6_WFV", "--cases", "8", "--seed", "3"])
    assert result.exit_code == 0, result.output
    rows = re.findall(r"(B\d)\s+│\s+(\d+)\s+│\s+([-+0-9.]+)\s+│\s+([0-9.na]+)\s+│\s+([0-9.na]+)", result.output)
    assert sum(int(r[1]) for r in rows) == 8
    for _, _, mean, low, high in rows:
        assert abs(float(mean)) < 0.005
        assert low == "nan" or float(low) < 0.0025
        assert high == "nan" or float(high) < 0.0055


def test_runs_below_the_reference_wavelengths_give_6s_values_on_them() -> None:
    """The table's runs ask 6S for 10 pm below each reference wavelength (two reference wavelengths
    computed instead of three); what 6S prints must equal the run on the reference itself, on every
    node of the table, for both aerosol models, and where 6S fails below a reference (0.59 um) the
    run on the reference stands in."""
    rng = np.random.default_rng(4)
    cases = [sixs.Case(float(rng.choice(ZENITH)), float(rng.choice(ZENITH[:3])), float(rng.choice(AZIMUTH)),
                       float(rng.choice(AOT550[1:])), model, wavelength_um=wavelength)
             for wavelength in (*WAVELENGTHS_UM, 0.59) for model in AEROSOL_MODELS]
    on_reference = sixs.run_many(cases, workers=2)
    below = run_at_reference_wavelengths(cases, workers=2, tick=None)
    for case, exact, fast in zip(cases, on_reference, below, strict=True):
        assert np.isfinite(fast.path_reflectance), case
        assert (fast.path_reflectance, fast.rayleigh_reflectance, fast.scattering_transmittance,
                fast.spherical_albedo) == (exact.path_reflectance, exact.rayleigh_reflectance,
                                           exact.scattering_transmittance, exact.spherical_albedo), case


def test_single_scattering_table_carries_the_aerosol_optics() -> None:
    """The thin-aerosol runs give what Mie theory says of 6S's models: extinction relative to 550 nm
    falling with wavelength, steeper for the small continental particles, and at 670 nm the large sea-salt
    particles' rainbow, a steep rise of the phase function from 130 to 150 degrees that levels off beyond."""
    with np.load(table_path("S2A_MSI").parent / "scattering.npz") as data:
        assert np.array_equal(data["wavelengths_um"], WAVELENGTHS_UM)
        angles, ratio, phase = list(data["scattering_angle"]), data["extinction_ratio"], data["aerosol_phase"]
    continental, maritime = AEROSOL_MODELS.index("continental"), AEROSOL_MODELS.index("maritime")
    np.testing.assert_allclose(ratio[:, WAVELENGTHS_UM.index(0.55)], 1.0, atol=1e-3)
    assert (np.diff(ratio, axis=-1) < 0).all()
    assert ratio[continental, 0] / ratio[continental, -1] > 2 * ratio[maritime, 0] / ratio[maritime, -1]
    red = WAVELENGTHS_UM.index(0.67)

    def rise(model: int, start: float, end: float) -> float:
        return float(phase[model, red, angles.index(end)] / phase[model, red, angles.index(start)])

    assert rise(maritime, 130, 150) > 2.0 and rise(maritime, 150, 160) < 1.15
    assert rise(continental, 130, 150) < 1.3
