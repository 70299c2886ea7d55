"""Options and helpers shared by several subcommands; light to import, as every command imports it (the
processing options of the ARD commands, which need the ARD stage, are in ``musyq.cli.processing``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import typer
from rasterio.errors import NotGeoreferencedWarning
from rich.console import Console

from musyq.core.errors import MusyqError

console = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn musyq errors into one red line and exit status 1; show reader warnings in yellow."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except MusyqError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
        finally:
            for warning in caught:
                # rasterio warns about the in-memory arrays it warps into, which carry no georeference
                if issubclass(warning.category, UserWarning) and not issubclass(warning.category,
                                                                               NotGeoreferencedWarning):
                    console.print(f"[yellow]warning:[/] {warning.message}", highlight=False)


CatalogOption = typer.Option(..., "--catalog", "-c", help="musyq ARD output folder (repeat for several).")
TileOption = typer.Option(..., "--tile", "-t", help="MGRS tile id, e.g. 18SVG.")
FromOption = typer.Option(..., "--from", help="First day (ISO 8601).")
ToOption = typer.Option(..., "--to", help="Last day (ISO 8601).")
CubeSensorOption = typer.Option(None, "--sensor", help="Only these sensors (repeat); default all.")
CubeBandsOption = typer.Option("blue,green,red,nir,swir16,swir22", "--bands", help="Harmonized bands, comma-separated.")
ResolutionOption = typer.Option(None, "--resolution", help="Pixel size in metres (default: the items' own).")
OverwriteOption = typer.Option(False, "--overwrite", help="Redo outputs that are already finished.")


def iso_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise MusyqError(f"{option} {text!r} is not an ISO 8601 date") from None


def band_list(text: str) -> tuple[str, ...]:
    return tuple(b.strip() for b in text.split(",") if b.strip())
