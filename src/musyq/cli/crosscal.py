"""``musyq crosscal``: per-band gains of a sensor against a reference sensor from near-simultaneous scenes."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from musyq.cli.options import console, user_errors
from musyq.cli.processing import DatetimeOption, OffsetOption, ScaleOption, SensorOption, stack_options


def crosscal(
    target: Path = typer.Argument(..., help="Level-1 product to calibrate (a Gaofen archive, ...)."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Level-1 product of the reference sensor."),
    out: Path = typer.Option(..., "--out", "-o", help="JSON file: a calibration table --calibration takes, with "
                             "the fit."),
    resolution: float = typer.Option(160.0, "--resolution", help="Pixel size of the comparison (m)."),
    aod: float | None = typer.Option(None, "--aod", help="AOD at 550 nm (default: retrieved from the reference)."),
    dem: Path | None = typer.Option(None, "--dem", help="Elevation model for placing RPC images."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Calibration table of the target."),
    sensor: str | None = SensorOption,
    when: str | None = DatetimeOption,
    scale: float = ScaleOption,
    offset: float = OffsetOption,
) -> None:
    """Fit TARGET's TOA against the TOA the REFERENCE predicts for it (band adjustment from the site's spectrum,
    BRDF to the target's geometry, the same atmosphere); --sensor/--datetime describe a plain-band reference."""
    from musyq.ard.crosscal import cross_calibrate
    from musyq.io.readers import open_scene

    with user_errors():
        target_scene = open_scene(target, calibration=calibration)
        reference_scene = open_scene(reference, stack_options(sensor, when, scale, offset))
        result = cross_calibrate(target_scene, reference_scene, resolution, aod, dem)
        partial = out.with_name(f".{out.name}.partial")
        partial.write_text(json.dumps(result.table(), indent=1) + "\n")
        partial.replace(out)
    for band in result.bands:
        console.print(f"{band.band} vs {band.reference_band}: reads {100 * (band.ratio - 1):+.2f} % "
                      f"(slope {band.slope:.4f}, intercept {band.intercept:+.4f}, R2 {band.r2:.3f}, RMSE "
                      f"{band.rmse:.4f}, {band.pixels} px)" + (f"; gain {band.gain:.6f}" if band.gain else ""))
