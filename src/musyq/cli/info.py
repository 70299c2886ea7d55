"""``musyq info PATH``: what musyq recognises in a product."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from musyq.cli.options import user_errors
from musyq.cli.processing import (CalibrationOption, DatetimeOption, OffsetOption, ScaleOption, SensorOption,
                                  stack_options)
from musyq.core.grid import tiles_touching
from musyq.core.scene import Calibration
from musyq.io.readers import open_scene


def info(
    path: Path = typer.Argument(..., help="Product folder, zip or metadata file."),
    sensor: str | None = SensorOption,
    when: str | None = DatetimeOption,
    scale: float = ScaleOption,
    offset: float = OffsetOption,
    calibration: Path | None = CalibrationOption,
) -> None:
    """Print the reader, sensor, time, bands, angles and MGRS tiles recognised in PATH."""
    with user_errors():
        scene = open_scene(path, stack_options(sensor, when, scale, offset), calibration)
        tiles = tiles_touching(scene.footprint)
    out = Console()
    out.print(f"[bold]{scene.product_id}[/]")
    out.print(f"reader   {scene.reader}")
    out.print(f"sensor   {scene.sensor.id} ({scene.sensor.platform} {scene.sensor.instrument})")
    out.print(f"acquired {scene.acquired:%Y-%m-%dT%H:%M:%S}Z")
    out.print(f"crs      {scene.crs}")
    out.print(f"angles   {scene.angles.describe()}")
    out.print(f"tiles    {' '.join(t.id for t in tiles) or 'none'}")
    for key, value in scene.metadata.items():
        out.print(f"{key:<8} {value}")
    table = Table("band", "name", "centre um", "file", "calibration")
    for source in scene.bands:
        table.add_row(source.band.id, source.band.common_name, f"{source.band.center_wavelength:.4f}",
                      Path(source.path).name, _described(source.calibration))
    out.print(table)
    if scene.missing_bands:
        out.print(f"[yellow]missing bands:[/] {' '.join(scene.missing_bands)}")


def _described(calibration: Calibration) -> str:
    """``kind name=value ...`` with short numbers, so the table keeps each coefficient whole."""
    values = " ".join(f"{f.name}={getattr(calibration, f.name):.6g}" for f in fields(calibration))
    return f"{type(calibration).__name__} {values}"
