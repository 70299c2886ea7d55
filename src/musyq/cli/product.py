"""``musyq product``: indices, FVC, LAI/FAPAR/FCOVER and albedo with per-pixel uncertainty, from ARD, composites
or ARD+ months, as COG + STAC and/or CF NetCDF."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress

from musyq.cli.options import OverwriteOption, band_list, console, user_errors
from musyq.core.errors import MusyqError
from musyq.products.fvc import EndMembers
from musyq.products.make import FORMATS, ProductOptions, make_products


def _constants(text: str) -> dict[str, float]:
    constants = {}
    for part in band_list(text):
        key, _, value = part.partition("=")
        try:
            constants[key.strip()] = float(value)
        except ValueError:
            raise MusyqError(f"--constants: {part!r} is not NAME=number (e.g. L=0.5)") from None
    return constants


def product(
    names: list[str] = typer.Argument(..., help="Products: any index of the Awesome Spectral Indices catalog "
                                      "(NDVI, EVI, NBR, NDRE, ...), FVC, LAI, FAPAR, FCOVER, ALBEDO, BSA, WSA."),
    inputs: list[Path] = typer.Option(..., "--input", "-i", help="ARD, composite or ARD+ output folder (its STAC "
                                      "collection) or one item's JSON; repeat for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    tile: str | None = typer.Option(None, "--tile", "-t", help="Only this MGRS tile."),
    first: str | None = typer.Option(None, "--from", help="Only items from this day (ISO 8601)."),
    last: str | None = typer.Option(None, "--to", help="Only items to this day (ISO 8601)."),
    formats: str = typer.Option("cog", "--format", help=f"cog, netcdf or both ({','.join(FORMATS)}): COG + STAC "
                                "per product, and/or one CF NetCDF4 per tile and period."),
    soil: float | None = typer.Option(None, "--fvc-soil", help="FVC soil NDVI (default: the tile's 5th percentile)."),
    vegetation: float | None = typer.Option(None, "--fvc-vegetation", help="FVC full-cover NDVI (default: the "
                                            "tile's 95th percentile)."),
    brdf: Path | None = typer.Option(None, "--brdf", help="Per-pixel BRDF parameters for BSA and WSA (bands "
                                     "described red_iso, red_vol, red_geo, ...)."),
    constants: str = typer.Option("", "--constants", help="Index constants, e.g. L=0.5,g=2.5."),
    overwrite: bool = OverwriteOption,
) -> None:
    """Make NAME... from every item of --input, each with its uncertainty and quality flags."""
    with user_errors():
        if (soil is None) != (vegetation is None):
            raise MusyqError("give both --fvc-soil and --fvc-vegetation, or neither")
        members = EndMembers(soil, vegetation) if soil is not None and vegetation is not None else None
        options = ProductOptions(band_list(formats), members, brdf, _constants(constants), overwrite)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("products", total=None)
            written = make_products(names, inputs, out, options, tile, first, last,
                                    lambda name, done, total: bar.update(task, description=name, completed=done,
                                                                         total=total))
    console.print(f"[bold green]product:[/] {len(written)} file(s) in {out}")
