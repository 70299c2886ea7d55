"""``musyq validate``: GBOV RM7 ground LAI read as it comes and matched against product rasters placed over the
sites with a known error, and a Sen2Cor reference raster matched against its own finer product."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from typer.testing import CliRunner

from musyq.cli import app
from musyq.io.sites import read_ground
from musyq.products.validation import Requirement, statistics

from .conftest import DATA

GBOV = DATA / "gbov-rm7-lai"
SEN2COR = DATA / "sen2cor-29RKH"
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_gbov_rm7_files_are_read_as_they_come() -> None:
    raw = read_ground([GBOV], merge_plots=False)
    by_key = {(v.site, v.when.strftime("%Y%m%d")): v for v in raw.values}
    # CPER_001, 2017-05-30: a grassland plot with understory only (Warren 0.200, its error 0.014)
    cper = by_key[("CPER_001", "20170530")]
    assert (cper.lon, cper.lat) == (-104.74566, 40.81555)
    assert cper.value == 0.200 and cper.uncertainty == 0.014
    # HARV_001, 2018-08-13 carries overstory flag 32: dropped, and counted
    assert ("HARV_001", "20180813") not in by_key and raw.dropped > 0
    # overstory + understory where both were measured, errors in quadrature
    harvard = by_key[("HARV_002", "20180814")]  # Warren 3.98 over 0.88, errors 0.20 and 0.07
    assert abs(harvard.value - 4.86) < 1e-9 and abs(harvard.uncertainty - np.hypot(0.20, 0.07)) < 1e-9
    miller = read_ground([GBOV], method="miller", merge_plots=False)
    assert {(v.site, v.when.strftime("%Y%m%d")): v for v in miller.values}[("CPER_001", "20170530")].value == 0.151
    # plots of one site and day become one value: their mean
    merged = read_ground([GBOV])
    plots = [v for v in raw.values if v.site.startswith("CPER") and v.when.strftime("%Y%m%d") == "20170530"]
    site_day = [v for v in merged.values if v.site == "CPER" and v.when.strftime("%Y%m%d") == "20170530"][0]
    assert site_day.plots == len(plots) > 1
    assert site_day.value == np.mean([p.value for p in plots])
    assert raw.source == "GBOV RM7 (LAI warren)" and len(merged.values) < len(raw.values)


def _place(folder: Path, lon: float, lat: float, when: str, value: float, pattern: float = 0.0) -> None:
    """A 30 m, 15 x 15 pixel LAI raster in the site's UTM zone; ``pattern`` alternates pixels by +-pattern."""
    zone = int((lon + 180) // 6) + 1
    crs = CRS.from_epsg(32600 + zone)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    values = np.full((15, 15), value, dtype=np.float32)
    values[(np.indices(values.shape).sum(axis=0) % 2) == 1] += pattern
    values[(np.indices(values.shape).sum(axis=0) % 2) == 0] -= pattern
    transform = Affine(30, 0, x - 7.5 * 30, 0, -30, y + 7.5 * 30)
    name = re.sub(r"\W", "", when)
    with rasterio.open(folder / f"LAI_{name}_{lon:.2f}.tif", "w", driver="GTiff", width=15, height=15, count=1,
                       dtype="float32", crs=crs, transform=transform, nodata=np.nan) as dataset:
        dataset.write(values, 1)
        dataset.update_tags(datetime=when)


def test_ground_matching_windows_and_statistics(tmp_path: Path) -> None:
    """Rasters placed 6 hours after each 2018 site-day read ground + 0.3 (known bias); Konza's 2019 rasters are
    a checkerboard (heterogeneous, refused); every other site-day has no product within the window."""
    ground = read_ground([GBOV])
    rasters = tmp_path / "lai"
    rasters.mkdir()
    placed = 0
    for value in ground.values:
        when = (value.when + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if value.when.year == 2018:
            _place(rasters, value.lon, value.lat, when, value.value + 0.3)
            placed += 1
        elif value.when.year == 2019 and value.site == "KONA":
            _place(rasters, value.lon, value.lat, when, 1.0, pattern=0.6)
    assert placed >= 3
    out = tmp_path / "report"
    inputs = [part for path in sorted(rasters.glob("*.tif")) for part in ("--input", str(path))]
    code, output = run("validate", "LAI", *inputs, "--sites", str(GBOV), "--out", str(out), "--days", "5")
    assert code == 0, output
    figures = json.loads((out / "validation.json").read_text())
    assert figures["count"] == placed
    assert abs(figures["accuracy"] - 0.3) < 1e-6 and figures["precision"] < 1e-6
    assert abs(figures["uncertainty"] - 0.3) < 1e-6 and abs(figures["slope"] - 1) < 1e-6
    assert abs(figures["intercept"] - 0.3) < 1e-5 and figures["r"] > 0.999999
    assert figures["within_requirement"] == 1.0  # 0.3 is within max(0.5, 20 %)
    reasons = [r["reason"] for r in figures["rejections"]]
    konza_2019 = sum(1 for v in ground.values if v.site == "KONA" and v.when.year == 2019)
    assert sum(r.startswith("heterogeneous") for r in reasons) == konza_2019 > 0
    # the rest have no product within 5 days, or only rasters of other sites
    elsewhere = sum(r.startswith(("no product within 5 days", "outside every product raster")) for r in reasons)
    assert elsewhere == len(ground.values) - placed - konza_2019
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "max(0.5, 20 % of the reference)" in page
    assert len((out / "matches.csv").read_text().splitlines()) == placed + 1
    # the same window with a tighter requirement: none within 0.1 + 0 %
    tight = statistics(np.array([1.3, 2.3]), np.array([1.0, 2.0]), Requirement.parse("0.1+0%"))
    assert tight.within_requirement == 0.0


def test_reference_raster_is_matched_on_the_coarser_grid(tmp_path: Path) -> None:
    """Sen2Cor's 100 m red against its own 200 m red, which the source made by averaging 2 x 2: validate
    averages the finer product onto the reference grid, so they agree to the stored rounding (1e-4)."""
    out = tmp_path / "report"
    code, output = run("validate", "SR", "--input", str(SEN2COR / "S2A_29RKH_20200219_L2A_B04_100m.tif"),
                       "--reference", str(SEN2COR / "S2A_29RKH_20200219_L2A_200m.tif"), "--reference-band", "red",
                       "--out", str(out))
    assert code == 0, output
    figures = json.loads((out / "validation.json").read_text())
    with rasterio.open(SEN2COR / "S2A_29RKH_20200219_L2A_200m.tif") as reference:
        valid = int((reference.read(3) > 0).sum())
    assert figures["count"] == valid > 100_000
    assert abs(figures["accuracy"]) < 1e-4 and figures["uncertainty"] < 1e-4 and figures["r"] > 0.9999
    assert figures["within_requirement"] == 1.0 and len(figures["apu_bins"]) == 6


def test_validation_errors_are_named(tmp_path: Path) -> None:
    code, output = run("validate", "LAI", "--input", str(SEN2COR / "S2A_29RKH_20200219_L2A_B04_100m.tif"),
                       "--out", str(tmp_path))
    assert code == 1 and "give either --sites or --reference" in output
    code, output = run("validate", "LAI", "--input", str(SEN2COR / "S2A_29RKH_20200219_L2A_B04_100m.tif"),
                       "--sites", str(GBOV), "--out", str(tmp_path), "--requirement", "half")
    assert code == 1 and "requirement 'half'" in output
    code, output = run("validate", "LAI", "--input", str(SEN2COR / "S2A_29RKH_20200219_L2A_B04_100m.tif"),
                       "--sites", str(GBOV), "--out", str(tmp_path))
    assert code == 1 and "0 ground value(s) matched" in output
