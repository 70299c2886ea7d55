"""``musyq validate``: a product against ground values (CSV, GeoJSON, GBOV RM7) or a reference raster, with
APU, bias, RMSE, r and the share within the requirement, in an HTML report with its plots."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import numpy as np
import typer

from musyq.cli.options import console, user_errors
from musyq.core.errors import MusyqError
from musyq.io.sites import read_ground
from musyq.products.validation import (DEFAULT_REQUIREMENT, REQUIREMENTS, Requirement, binned_apu, find_rasters,
                                       match_ground, match_raster, statistics, summary)


def validate(
    product: str = typer.Argument(..., help="The product to validate (LAI, FAPAR, NDVI, ... as musyq product "
                                  "names it; or any name for plain rasters)."),
    inputs: list[Path] = typer.Option(..., "--input", "-i", help="musyq product folder (STAC) or GeoTIFFs of the "
                                      "product; repeat for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.html, validation.json and matches.csv."),
    sites: list[Path] | None = typer.Option(None, "--sites", help="Ground values: CSV (id, lon, lat, date, value, "
                                            "uncertainty), GeoJSON points, or GBOV RM7 files or folders."),
    reference: Path | None = typer.Option(None, "--reference", help="A reference raster instead of ground values."),
    reference_band: str | None = typer.Option(None, "--reference-band", help="Band of the reference (number or "
                                              "description)."),
    band: str | None = typer.Option(None, "--band", help="Band of plain product rasters (number or description)."),
    when: str | None = typer.Option(None, "--date", help="Date of plain product rasters without a datetime tag."),
    days: float = typer.Option(10.0, "--days", help="Time window: ground and product at most this many days apart."),
    window: int = typer.Option(3, "--window", help="Spatial window around a site, in pixels (odd)."),
    max_cv: float = typer.Option(0.25, "--max-cv", help="Homogeneity: the window's largest coefficient of variation."),
    requirement: str | None = typer.Option(None, "--requirement", help="ABS|REL% (the larger, GCOS style) or "
                                           "ABS+REL% (the sum, MODIS style); default by product."),
    gbov_method: str = typer.Option("warren", "--gbov-method", help="GBOV RM7 LAI estimate: warren or miller."),
    gbov_variable: str = typer.Option("LAI", "--gbov-variable", help="GBOV RM7 variable: LAI or LAIe."),
) -> None:
    """Validate PRODUCT: match it with the ground or a reference raster and report accuracy."""
    # matplotlib only when a report is drawn, so that every other musyq command starts without it
    from musyq.io.validation_report import write_validation_report

    with user_errors():
        if (sites is None) == (reference is None):
            raise MusyqError("give either --sites or --reference")
        rule = Requirement.parse(requirement or REQUIREMENTS.get(product.upper(), DEFAULT_REQUIREMENT))
        rasters = find_rasters(product, inputs, band, when)
        figures: dict[str, object] = {"product": product, "requirement": rule.describe()}
        sigma = None
        if sites:
            ground = read_ground(sites, gbov_method, gbov_variable)
            matches, rejected = match_ground(ground.values, rasters, days, window, max_cv)
            figures.update({"ground": ground.source, "ground values": len(ground.values),
                            "ground records dropped (flagged or empty)": ground.dropped,
                            "rejected": len(rejected), "time window (days)": days, "window (pixels)": window,
                            "max CV": max_cv})
            if len(matches) < 2:
                reasons = sorted({r.reason for r in rejected})
                raise MusyqError(f"{len(matches)} ground value(s) matched the product; rejected: {'; '.join(reasons)}")
            estimate = np.array([m.estimate for m in matches])
            truth = np.array([m.reference for m in matches])
            spreads = np.array([np.hypot(np.nan_to_num(m.estimate_sigma), np.nan_to_num(m.reference_sigma))
                                for m in matches])
            sigma = np.where(spreads > 0, spreads, np.nan)
            reference_name = f"ground {product}"
            out.mkdir(parents=True, exist_ok=True)
            with (out / "matches.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(asdict(matches[0])))
                writer.writeheader()
                writer.writerows(asdict(m) for m in matches)
            figures["rejections"] = [asdict(r) for r in rejected]
        else:
            assert reference is not None
            pairs = [match_raster(r, reference, reference_band) for r in rasters]
            estimate = np.concatenate([p[0] for p in pairs])
            truth = np.concatenate([p[1] for p in pairs])
            reference_name = f"reference {reference.name}"
            figures["reference"] = reference.name
        result = statistics(estimate, truth, rule, sigma)
        bins = binned_apu(estimate, truth)
        figures.update(summary(result))
        figures["apu_bins"] = bins
        report = write_validation_report(out, f"musyq validation of {product}", figures, estimate, truth,
                                         rule.tolerance(truth), bins, product, reference_name)
    console.print(f"[bold green]validate:[/] {result.count} matches, bias {result.accuracy:+.4f}, RMSE "
                  f"{result.uncertainty:.4f}, r {result.r:.3f}, {100 * result.within_requirement:.0f}% within "
                  f"{rule.describe()}; {report}")
