"""``musyq cube``: the ARD items of a tile and period from one or more catalogs as one Zarr store."""

from __future__ import annotations

from pathlib import Path

import typer

from musyq.cli.options import (CatalogOption, CubeBandsOption, CubeSensorOption, FromOption, OverwriteOption,
                               ResolutionOption, TileOption, ToOption, band_list, console, iso_date, user_errors)
from musyq.timeseries.cube import open_cube, write_zarr


def cube(
    catalog: list[Path] = CatalogOption,
    tile: str = TileOption,
    first: str = FromOption,
    last: str = ToOption,
    sensor: list[str] | None = CubeSensorOption,
    bands: str = CubeBandsOption,
    resolution: float | None = ResolutionOption,
    out: Path = typer.Option(..., "--out", "-o", help="Zarr store to write."),
    overwrite: bool = OverwriteOption,
) -> None:
    """Write every ARD item of TILE from --from to --to as a Zarr cube chunked whole in time."""
    with user_errors():
        data = open_cube(catalog, tile, iso_date(first, "--from"), iso_date(last, "--to"), sensor or None,
                         band_list(bands), resolution)
        with console.status(f"writing {data.sizes['time']} dates of {tile}"):
            write_zarr(data, out, overwrite)
    sensors = ", ".join(sorted({str(s) for s in data.sensor.values}))
    console.print(f"[bold green]cube:[/] {out} ({data.sizes['time']} dates from {sensors}, "
                  f"{data.sizes['y']} x {data.sizes['x']} px)")
