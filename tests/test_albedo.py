"""Albedo: the kernel integrals against a numerical integration of musyq's own kernels over the view
hemisphere (and the sun's), the narrow-to-broadband mixes as published, and BSA/WSA through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from musyq.ard.brdf import li_sparse, ross_thick
from musyq.cli import app
from musyq.core.errors import MusyqError
from musyq.products.albedo import broadband, coefficients_for, spectral_albedo

from .conftest import SAMPLES

runner = CliRunner()


def _black_sky(kernel, sun: float, steps: int = 720) -> float:  # type: ignore[no-untyped-def]
    """(1/pi) * integral of the kernel times cos(view) over the view hemisphere, by the midpoint rule."""
    view = np.radians((np.arange(steps) + 0.5) * 90 / steps)
    azimuth = np.radians((np.arange(steps) + 0.5) * 360 / steps)
    v, a = np.meshgrid(view, azimuth, indexing="ij")
    values = kernel(sun, np.degrees(v), np.degrees(a)) * np.cos(v) * np.sin(v)
    return float(values.sum() * np.radians(90 / steps) * np.radians(360 / steps) / np.pi)


@pytest.mark.parametrize("sun", [0.0, 30.0, 60.0])
def test_black_sky_integrals_match_the_kernels(sun: float) -> None:
    """Lucht et al.'s polynomials are fits: to the integrals of musyq's kernels within 0.007 for LiSparse and
    0.015 for RossThick (worst near the zenith: -0.0076 against -0.0211) up to 60 degrees."""
    for kernel, part in ((ross_thick, "vol"), (li_sparse, "geo")):
        one = {"iso": 0.0, "vol": 0.0, "geo": 0.0} | {part: 1.0}
        polynomial = float(spectral_albedo("BSA", one["iso"], one["vol"], one["geo"], sun))
        assert abs(polynomial - _black_sky(kernel, sun)) < (0.015 if part == "vol" else 0.007), (part, sun)


def test_white_sky_constants_match_the_kernels_integrated_twice() -> None:
    """The white-sky constants are exact integrals (no fit): musyq's kernels over both hemispheres give them."""
    suns = (np.arange(90) + 0.5) * 1.0
    for kernel, part in ((ross_thick, "vol"), (li_sparse, "geo")):
        black = np.array([_black_sky(kernel, s, 240) for s in suns])
        white = 2 * float(np.sum(black * np.cos(np.radians(suns)) * np.sin(np.radians(suns))) * np.radians(1.0))
        one = {"vol": (1.0, 0.0), "geo": (0.0, 1.0)}[part]
        assert abs(white - float(spectral_albedo("WSA", 0.0, *one))) < 2e-3, part


def test_narrow_to_broadband_mixes_as_published() -> None:
    oli, msi = coefficients_for("L8_OLI"), coefficients_for("S2B_MSI")
    assert oli.weights == {"blue": 0.356, "red": 0.130, "nir": 0.373, "swir16": 0.085, "swir22": 0.072}
    assert oli.offset == -0.0018 and abs(sum(msi.weights.values()) - 1) < 1e-9
    flat = {b: np.array([0.2], dtype=np.float32) for b in msi.weights}
    assert float(broadband(msi, flat).value[0]) == pytest.approx(0.2, abs=1e-6)
    with pytest.raises(MusyqError, match="adjust its bands to L8_OLI"):
        coefficients_for("GF1_WFV1")


def test_black_and_white_sky_albedo_from_brdf_parameters(tmp_path: Path) -> None:
    ard = tmp_path / "ard"
    result = runner.invoke(app, ["ard", str(SAMPLES / "S2A_MSIL1C_20170729_T19UDP_900m"), "--out", str(ard),
                                 "--resolution", "900", "--tile", "19UDP", "--bandpass-to", "none"])
    assert result.exit_code == 0, result.output
    item = next(ard.glob("19UDP/*/*.SR.tif"))
    parameters = {"blue": (0.05, 0.02, 0.005), "green": (0.08, 0.04, 0.01), "red": (0.06, 0.03, 0.01),
                  "nir": (0.30, 0.15, 0.03), "swir16": (0.15, 0.06, 0.02), "swir22": (0.08, 0.03, 0.01)}
    with rasterio.open(item) as sr:
        profile = sr.profile | {"count": 18, "dtype": "float32", "nodata": None}
        shape = sr.shape
    brdf = tmp_path / "brdf.tif"
    with rasterio.open(brdf, "w", **profile) as dataset:
        names = []
        for k, (band, triplet) in enumerate(parameters.items()):
            for j, kernel in enumerate(("iso", "vol", "geo")):
                dataset.write(np.full(shape, triplet[j], dtype=np.float32), 3 * k + j + 1)
                names.append(f"{band}_{kernel}")
        dataset.descriptions = tuple(names)
    out = tmp_path / "albedo"
    result = runner.invoke(app, ["product", "BSA", "WSA", "--input", str(ard), "--out", str(out), "--brdf", str(brdf)])
    assert result.exit_code == 0, result.output
    mix = coefficients_for("S2A_MSI")
    item_id = item.name.removesuffix(".SR.tif")
    sun = json.loads((item.parent / f"{item_id}.json").read_text())["properties"]["musyq:nbar_solar_zenith"]
    for name in ("BSA", "WSA"):
        expected = sum(w * float(spectral_albedo(name, *parameters[b], sun)) for b, w in mix.weights.items())
        with rasterio.open(out / "19UDP" / f"{item_id}.{name}" / f"{item_id}.{name}.tif") as dataset:
            values = dataset.read(1)
        with rasterio.open(item.parent / f"{item_id}.MASK.tif") as mask:
            usable = np.isin(mask.read(1), (1, 2))  # clear land and water
        assert np.nanmax(np.abs(values - expected)) < 1e-6
        np.testing.assert_array_equal(np.isfinite(values), usable)
