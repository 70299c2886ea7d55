"""``musyq mask``: cloud, shadow, snow and water codes for any TOA reflectance raster."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from musyq.cli.options import user_errors
from musyq.cli.processing import CloudBufferOption, MaskMethodOption, ShadowBufferOption
from musyq.ard.cloudmask import MaskMethod
from musyq.ard.maskfile import mask_file
from musyq.io.output import CLEAR, CLOUD, CLOUD_SHADOW, SNOW, WATER


def mask(
    path: Path = typer.Argument(..., help="Multi-band TOA reflectance raster; band descriptions are common band "
                                "names (blue, green, red, nir, swir16, swir22, cirrus, lwir11)."),
    out: Path = typer.Option(..., "--out", "-o", help="Quality COG to write (uint8 codes)."),
    sun_zenith: float = typer.Option(..., "--sun-zenith", help="Sun zenith angle, degrees."),
    sun_azimuth: float = typer.Option(..., "--sun-azimuth", help="Sun azimuth, degrees clockwise from north."),
    view_zenith: float = typer.Option(0.0, "--view-zenith", help="View zenith angle, degrees."),
    view_azimuth: float = typer.Option(0.0, "--view-azimuth", help="View azimuth, degrees clockwise from north."),
    sensor: str | None = typer.Option(None, "--sensor", help="Sensor whose band ids or band order name the bands."),
    probability: Path | None = typer.Option(None, "--probability", help="Also write the cloud probability "
                                            "(uint8 percent, 50 = cloud threshold) to this COG."),
    scale: float = typer.Option(10000.0, "--scale", help="Integer bands without a scale tag: DN per unit "
                                "reflectance."),
    bands: str | None = typer.Option(None, "--bands", help="Common names of the bands in order, comma-separated "
                                     "(e.g. blue,green,red,nir,swir16,swir22,cirrus,lwir11), instead of the "
                                     "descriptions."),
    pixel_size: float | None = typer.Option(None, "--pixel-size", help="Pixel size in metres, for a raster without "
                                            "a coordinate reference system."),
    method: MaskMethod = MaskMethodOption,
    cloud_buffer: float | None = CloudBufferOption,
    shadow_buffer: float | None = ShadowBufferOption,
) -> None:
    """Write the musyq quality codes (0 fill, 1 clear, 2 water, 3 cloud shadow, 4 snow, 5 cloud) of PATH."""
    with user_errors():
        names = tuple(b.strip() for b in bands.split(",")) if bands else None
        result = mask_file(path, out, sun_zenith, sun_azimuth, view_zenith, view_azimuth, sensor, method,
                           cloud_buffer, shadow_buffer, probability, scale, names, pixel_size)
    shares = ", ".join(f"{name} {100 * result.fraction(code):.1f}%" for name, code in
                       (("clear", CLEAR), ("water", WATER), ("shadow", CLOUD_SHADOW), ("snow", SNOW),
                        ("cloud", CLOUD)))
    Console().print(f"{out}: {shares}")
