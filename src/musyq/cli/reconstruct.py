"""``musyq reconstruct``: monthly gap-free surface reflectance (ARD+) of a tile, flagged and with a sigma."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress

from musyq.cli.options import (CatalogOption, CubeBandsOption, CubeSensorOption, FromOption, OverwriteOption,
                               ResolutionOption, TileOption, ToOption, band_list, console, iso_date, user_errors)
from musyq.timeseries.cube import open_cube
from musyq.timeseries.reconstruct import ReconstructOptions
from musyq.timeseries.tiles import reconstruct_tile


def reconstruct(
    catalog: list[Path] = CatalogOption,
    tile: str = TileOption,
    first: str = FromOption,
    last: str = ToOption,
    sensor: list[str] | None = CubeSensorOption,
    bands: str = CubeBandsOption,
    resolution: float | None = ResolutionOption,
    max_gap: float = typer.Option(96.0, "--max-gap", help="Longest gap in days a pixel's own curve may bridge."),
    window: int = typer.Option(7, "--window", help="Similar-pixel search radius in pixels."),
    lam: float | None = typer.Option(None, "--lambda", help="Fixed smoothing strength (default: GCV per pixel)."),
    reference: list[Path] | None = typer.Option(None, "--reference", help="MODIS MOD13, MCD43A4 or MOD09 files "
                                                "(HDF4, or per-layer GeoTIFFs named after the granule) or folders "
                                                "of them: their curves shape the fit and bridge long gaps."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (ARDP COGs and a STAC collection)."),
    overwrite: bool = OverwriteOption,
) -> None:
    """Reconstruct every month of TILE from --from to --to from all its ARD: ARDP tiles as COG + STAC."""
    with user_errors():
        start, end = iso_date(first, "--from"), iso_date(last, "--to")
        options = ReconstructOptions(lam=lam, max_gap=max_gap, window=window, minimum=0.0)
        data = open_cube(catalog, tile, start, end, sensor or None, band_list(bands), resolution, with_sigma=True)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("reconstructing", total=None)
            items = reconstruct_tile(data, start, end, out, options, overwrite,
                                     lambda name, done, total: bar.update(task, completed=done, total=total),
                                     reference or None)
    console.print(f"[bold green]reconstruct:[/] {len(items)} month(s) of {tile} in {out}")
