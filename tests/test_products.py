"""``musyq product`` end to end on the bundled Sentinel-2 sample: ARD with SRUNC, then indices, FVC, LAI and
albedo as COG + STAC and CF NetCDF, checked against the formulas on the written pixels, with a Monte Carlo check
of the propagated uncertainty."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pystac
import pystac.validation
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate
from typer.testing import CliRunner

from musyq.cli import app
from musyq.products.biophysical import INPUT_BANDS, biophysical
from musyq.products.make import ProductOptions, network_inputs, make_product, needed_bands
from musyq.products.source import read_source
from musyq.timeseries.cube import HARMONIZED

from .conftest import SAMPLES

runner = CliRunner()
ITEM = "S2A_MSI.900m.2017210153557.19UDP.001"


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def ard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ard")
    code, output = run("ard", str(SAMPLES / "S2A_MSIL1C_20170729_T19UDP_900m"), "--out", str(out), "--resolution",
                       "900", "--tile", "19UDP", "--bandpass-to", "none")
    assert code == 0, output
    return out


def _layer(folder: Path, name: str) -> dict[str, np.ndarray]:
    with rasterio.open(folder / f"{ITEM}.{name}.tif") as dataset:
        stored = dataset.read().astype(np.float64)
        names = dataset.descriptions
    by_name = {}
    for harmonized, sources in HARMONIZED.items():
        for source in sources:
            if source in names:
                by_name[harmonized] = np.where(stored[names.index(source)] > 0, stored[names.index(source)] / 1e4,
                                               np.nan)
                break
    return by_name


def test_products_match_their_formulas_on_the_written_pixels(ard: Path, tmp_path: Path) -> None:
    out = tmp_path / "products"
    code, output = run("product", "NDVI", "evi", "FVC", "LAI", "ALBEDO", "--input", str(ard), "--out", str(out),
                       "--format", "cog,netcdf")
    assert code == 0, output
    source = ard / "19UDP" / ITEM
    sr, sigma = _layer(source, "SR"), _layer(source, "SRUNC")
    with rasterio.open(source / f"{ITEM}.MASK.tif") as mask:
        clear = mask.read(1) == 1
    folder = out / "19UDP"

    def product(name: str, layer: str | None = None) -> np.ndarray:
        path = folder / f"{ITEM}.{name}" / f"{ITEM}.{layer or name}.tif"
        assert cog_validate(str(path))[0]
        with rasterio.open(path) as dataset:
            return dataset.read(1)

    ndvi = product("NDVI")
    expected = (sr["nir"] - sr["red"]) / (sr["nir"] + sr["red"])
    np.testing.assert_allclose(ndvi[clear], expected[clear], atol=1e-6)
    assert np.isnan(ndvi[~np.isfinite(sr["red"])]).all()
    # EVI with the published MODIS coefficients G 2.5, C1 6, C2 7.5, L 1
    evi = product("EVI")
    blue = sr["blue"]
    np.testing.assert_allclose(evi[clear], (2.5 * (sr["nir"] - sr["red"]) / (sr["nir"] + 6 * sr["red"] - 7.5 * blue + 1)
                                            )[clear], atol=1e-5)
    # NDVI sigma: first-order propagation of the SR sigma
    d_nir = 2 * sr["red"] / (sr["nir"] + sr["red"]) ** 2
    d_red = -2 * sr["nir"] / (sr["nir"] + sr["red"]) ** 2
    np.testing.assert_allclose(product("NDVI", "NDVI_SIGMA")[clear],
                               np.hypot(d_nir * sigma["nir"], d_red * sigma["red"])[clear], rtol=1e-4)

    # FVC from the tile's own 5/95 % NDVI end-members
    item = json.loads((folder / f"{ITEM}.FVC" / f"{ITEM}.FVC.json").read_text())
    soil, vegetation = item["properties"]["musyq:fvc_ndvi_soil"], item["properties"]["musyq:fvc_ndvi_vegetation"]
    np.testing.assert_allclose([soil, vegetation], np.percentile(expected[clear], [5, 95]), atol=1e-4)
    np.testing.assert_allclose(product("FVC")[clear], np.clip((expected - soil) / (vegetation - soil), 0, 1)[clear],
                               atol=1e-4)

    # LAI: the SNAP network on the NBAR reflectance, in the NBAR geometry
    properties = json.loads((source / f"{ITEM}.json").read_text())["properties"]
    lai = biophysical("LAI", {b: sr[b] for b in INPUT_BANDS}, 0.0, properties["musyq:nbar_solar_zenith"], 0.0)
    np.testing.assert_allclose(product("LAI")[clear], lai.value[clear], atol=1e-4)
    np.testing.assert_array_equal(product("LAI", "LAI_QUALITY")[clear], lai.quality[clear])
    assert np.all(product("LAI", "LAI_QUALITY")[~clear] == 255)
    assert 0.5 < np.median(lai.value[clear]) < 6  # July, Quebec: forest

    # broadband albedo of MSI (Bonafoni & Sekertekin 2020), with its sigma
    weights = {"blue": 0.2266, "green": 0.1236, "red": 0.1573, "nir": 0.3417, "swir16": 0.1170, "swir22": 0.0338}
    albedo = sum(w * sr[b] for b, w in weights.items())
    np.testing.assert_allclose(product("ALBEDO")[clear], albedo[clear], atol=1e-5)
    np.testing.assert_allclose(product("ALBEDO", "ALBEDO_SIGMA")[clear],
                               np.sqrt(sum((w * sigma[b]) ** 2 for b, w in weights.items()))[clear], rtol=1e-4)

    lai_item = pystac.Item.from_file(str(folder / f"{ITEM}.LAI" / f"{ITEM}.LAI.json"))
    assert {"LAI", "LAI_SIGMA", "LAI_QUALITY"} <= set(lai_item.assets)
    assert lai_item.properties["mgrs:tile"] == "19UDP" and lai_item.datetime is not None
    pystac.validation.validate_dict({**lai_item.to_dict(), "stac_extensions": []})
    collection = pystac.Collection.from_file(str(out / "collection.json"))
    assert len(list(collection.get_items(recursive=True))) == 5

    # the NetCDF: CF, the same values, a grid mapping GDAL reads
    netcdf = folder / f"{ITEM}.nc"
    with xr.open_dataset(netcdf) as dataset:
        assert dataset.attrs["Conventions"] == "CF-1.8"
        assert {"LAI", "LAI_uncertainty", "LAI_quality", "NDVI", "FVC"} <= set(dataset.data_vars)
        assert dataset["LAI"].attrs["standard_name"] == "leaf_area_index"
        assert dataset["LAI_quality"].attrs["flag_meanings"].startswith("input_out_of_definition_domain")
        np.testing.assert_allclose(dataset["LAI"].values[0][clear], product("LAI")[clear], atol=1e-6)
        assert str(dataset.time.values[0]).startswith("2017-07-29")
    with rasterio.open(f'NETCDF:"{netcdf}":LAI') as dataset, rasterio.open(source / f"{ITEM}.SR.tif") as reference:
        assert dataset.crs == reference.crs
        assert dataset.transform.almost_equals(reference.transform)

    # a rerun keeps what is finished
    stamp = (folder / f"{ITEM}.LAI" / f"{ITEM}.LAI.tif").stat().st_mtime_ns
    assert run("product", "LAI", "--input", str(ard), "--out", str(out))[0] == 0
    assert (folder / f"{ITEM}.LAI" / f"{ITEM}.LAI.tif").stat().st_mtime_ns == stamp


def test_lai_sigma_agrees_with_monte_carlo_on_real_pixels(ard: Path) -> None:
    """Perturb the sample's NBAR reflectance by its SRUNC (independent normal draws per band), run the network:
    the spread of LAI matches the Jacobian sigma within 20 % on the median pixel and on nine in ten pixels."""
    source = ard / "19UDP" / ITEM
    sr, sigma = _layer(source, "SR"), _layer(source, "SRUNC")
    properties = json.loads((source / f"{ITEM}.json").read_text())["properties"]
    sun = properties["musyq:nbar_solar_zenith"]
    usable = np.isfinite(np.stack([sr[b] for b in INPUT_BANDS])).all(axis=0)
    bands = {b: sr[b][usable] for b in INPUT_BANDS}
    spread = {b: sigma[b][usable] for b in INPUT_BANDS}
    result = biophysical("LAI", bands, 0.0, sun, 0.0, spread)
    rng = np.random.default_rng(5)
    draws = np.stack([biophysical("LAI", {b: v + spread[b] * rng.standard_normal(v.shape) for b, v in bands.items()},
                                  0.0, sun, 0.0).value for _ in range(300)])
    # pixels whose draws stay off the clipping bounds, where the first-order sigma applies
    held = (draws <= 0.0).mean(axis=0) + (draws >= 8.0).mean(axis=0)
    inside = (held == 0) & (result.quality == 0)
    assert inside.sum() > 500
    ratio = np.std(draws, axis=0)[inside] / result.sigma[inside]
    print(f"\nLAI Monte Carlo / Jacobian sigma: median {np.median(ratio):.3f}, "
          f"within 20 %: {np.mean(np.abs(ratio - 1) < 0.2):.3f}")
    assert abs(np.median(ratio) - 1) < 0.2
    assert np.mean(np.abs(ratio - 1) < 0.2) > 0.9


def test_bad_requests_are_named(ard: Path, tmp_path: Path) -> None:
    code, output = run("product", "NVDI", "--input", str(ard), "--out", str(tmp_path))
    assert code == 1 and "'NVDI' is not an index" in output
    code, output = run("product", "NDRE", "--input", str(ard), "--out", str(tmp_path), "--format", "zarr")
    assert code == 1 and "unknown output format 'zarr'" in output
    code, output = run("product", "BSA", "--input", str(ard), "--out", str(tmp_path))
    assert code == 1 and "--brdf" in output
    code, output = run("product", "NDVI", "--input", str(tmp_path / "nowhere"), "--out", str(tmp_path))
    assert code == 1 and "does not exist" in output
    assert not list(tmp_path.glob("**/*.tif"))


def test_red_edge_synthesized_from_oli_like_bands_matches_the_hidden_msi_bands(tmp_path: Path) -> None:
    """Sentinel-2 ARD adjusted to OLI, with its red-edge bands hidden: the mixes fitted on the PROSAIL library
    rebuild them from the OLI-like bands within three times their held-out RMSE, and the LAI made through them
    stays within its (larger) sigma of the LAI from the real bands on most pixels."""
    out = tmp_path / "ard"
    code, output = run("ard", str(SAMPLES / "S2A_MSIL1C_20170729_T19UDP_900m"), "--out", str(out), "--resolution",
                       "900", "--tile", "19UDP")
    assert code == 0, output
    item = pystac.Item.from_file(str(out / "19UDP" / ITEM / f"{ITEM}.json"))
    source = read_source(item, needed_bands("LAI"))
    assert source.reference_sensor == "L8_OLI"
    hidden = ("rededge1", "rededge2", "rededge3")
    blind = replace(source, bands={k: v for k, v in source.bands.items() if k not in hidden},
                    sigma={k: v for k, v in (source.sigma or {}).items() if k not in hidden})
    bands, sigma, synthesized = network_inputs(blind)
    assert set(synthesized) == set(hidden) and sigma is not None
    land = source.land
    for band in hidden:
        error = bands[band][land] - source.bands[band][land]
        rmse = float(np.sqrt(np.nanmean(error**2)))
        allowed = float(synthesized[band].split("RMSE ")[1].rstrip(")"))
        print(f"\n{band}: synthesized RMSE {rmse:.4f} (library held-out {allowed:.4f})")
        assert rmse < 3 * allowed
    real = make_product("LAI", source, ProductOptions())
    made = make_product("LAI", blind, ProductOptions())
    assert made.properties["musyq:synthesized_bands"] and made.sigma is not None and real.sigma is not None
    both = land & np.isfinite(real.value) & np.isfinite(made.value)
    assert np.median(made.sigma[both]) > np.median(real.sigma[both])
    within = np.mean(np.abs(made.value[both] - real.value[both]) <= 2 * made.sigma[both])
    print(f"LAI through synthesized red edge within 2 sigma of the real-band LAI: {within:.3f}")
    assert within > 0.8


def test_landsat_lai_through_synthesized_red_edge(tmp_path: Path) -> None:
    out = tmp_path / "ard"
    code, output = run("ard", str(SAMPLES / "LC08_L1TP_016037_20170813_20170814_01_RT_900m"), "--out", str(out),
                       "--resolution", "900")
    assert code == 0, output
    code, output = run("product", "LAI", "--input", str(out), "--out", str(tmp_path / "lai"))
    assert code == 0, output
    items = sorted((tmp_path / "lai").glob("*/*.LAI/*.LAI.json"))
    assert items
    values, spread = [], []
    for item in items:
        properties = json.loads(item.read_text())["properties"]
        assert set(properties["musyq:synthesized_bands"]) == {"rededge1", "rededge2", "rededge3"}
        with rasterio.open(item.with_suffix(".tif")) as lai, \
                rasterio.open(item.with_name(item.name.replace(".json", "_SIGMA.tif"))) as sigma:
            values.append(lai.read(1).ravel())
            spread.append(sigma.read(1).ravel())
    lai_values, sigma_values = np.concatenate(values), np.concatenate(spread)
    finite = np.isfinite(lai_values)
    assert finite.sum() > 100 and 0 <= np.nanmin(lai_values) and np.nanmax(lai_values) <= 8
    # the mixes' own error (0.008-0.016 in red edge) is part of every pixel's sigma
    assert np.all(sigma_values[finite] > 0) and np.median(sigma_values[finite]) > 0.1
