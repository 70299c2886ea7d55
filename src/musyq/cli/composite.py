"""``musyq composite``: one composite per period of a tile's ARD, by a method from the registry."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress

from musyq.cli.options import (CatalogOption, CubeBandsOption, CubeSensorOption, FromOption, OverwriteOption,
                               ResolutionOption, TileOption, ToOption, band_list, console, iso_date, user_errors)
from musyq.core.errors import MusyqError
from musyq.timeseries.composite import BapWeights, periods
from musyq.timeseries.methods import METHODS
from musyq.timeseries.cube import open_cube
from musyq.timeseries.tiles import composite_tile


def _weights(text: str, preference: str) -> BapWeights:
    """``day=1,cloud=0.4`` and ``L8_OLI=1,S2A_MSI=0.8`` into the parametric weights."""
    fields: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in BapWeights.__dataclass_fields__ or key == "preference":
            raise MusyqError(f"--weights: unknown weight {key!r}; use day, cloud, haze, view, sensor, "
                             "cloud_distance, haze_limit, view_limit")
        try:
            fields[key] = float(value)
        except ValueError:
            raise MusyqError(f"--weights: {part!r} is not name=number") from None
    ranks = {}
    for part in filter(None, (p.strip() for p in preference.split(","))):
        key, _, value = part.partition("=")
        try:
            ranks[key] = float(value)
        except ValueError:
            raise MusyqError(f"--sensor-preference: {part!r} is not SENSOR=number") from None
    return BapWeights(**fields, preference=ranks)  # type: ignore[arg-type]


def composite(
    catalog: list[Path] = CatalogOption,
    tile: str = TileOption,
    first: str = FromOption,
    last: str = ToOption,
    method: str = typer.Option("bap", "--method", "-m", help=f"One of {', '.join(METHODS)}."),
    period: str = typer.Option("month", "--period", help="month, season, year or P<n>D (e.g. P16D)."),
    weights: str = typer.Option("", "--weights", help="bap scores' weights, e.g. day=1,cloud=0.4,haze=0.3,view=0,"
                                "sensor=0 (FORCE's defaults)."),
    preference: str = typer.Option("", "--sensor-preference", help="bap sensor scores, e.g. L8_OLI=1,S2A_MSI=0.5 "
                                   "(used with a sensor weight)."),
    sensor: list[str] | None = CubeSensorOption,
    bands: str = CubeBandsOption,
    resolution: float | None = ResolutionOption,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (COGs and a STAC collection)."),
    overwrite: bool = OverwriteOption,
) -> None:
    """Composite TILE over each period from --from to --to: bands, chosen date, clear count and sensor."""
    with user_errors():
        if method not in METHODS:
            raise MusyqError(f"unknown composite method {method!r}; choose one of {', '.join(METHODS)}")
        start, end = iso_date(first, "--from"), iso_date(last, "--to")
        spans = periods(start, end, period)
        bap_weights = _weights(weights, preference)
        data = open_cube(catalog, tile, start, end, sensor or None, band_list(bands), resolution, with_sigma=True)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("compositing", total=None)
            items = composite_tile(data, spans, method, out, bap_weights, overwrite,
                                   lambda name, done, total: bar.update(task, description=name, completed=done,
                                                                        total=total))
    console.print(f"[bold green]composite:[/] {len(items)} period(s) of {tile} in {out}")
