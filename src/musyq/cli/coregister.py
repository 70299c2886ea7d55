"""``musyq coregister``: the sub-pixel offset (or affine transform) of an image against a reference."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from musyq.cli.options import user_errors
from musyq.ard.coregister import DEFAULT_MAX_RMSE, Mode, apply, read_pair, register


def coregister(
    image: Path = typer.Argument(..., help="Raster to register (any projection and resolution)."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Reference raster of the same place."),
    band: str = typer.Option("nir", "--band", help="Band both share: a description (nir, red, ...) or a number."),
    mode: Mode = typer.Option(Mode.global_, "--mode", help="global: one offset; local: affine from tie points."),
    out: Path = typer.Option(..., "--out", "-o", help="JSON file for the result."),
    apply_to: Path | None = typer.Option(None, "--apply", help="Also write the corrected image here (GeoTIFF on "
                                         "the image's own grid)."),
    max_rmse: float = typer.Option(DEFAULT_MAX_RMSE, "--max-rmse", help="Flag results whose tie-point residual "
                                   "RMSE is above this many pixels."),
) -> None:
    """Print and write the offset of IMAGE against REFERENCE in pixels of IMAGE and in metres."""
    with user_errors():
        image_band, reference_band, profile = read_pair(image, reference, band)
        transform = profile["transform"]
        result = register(reference_band, image_band, (abs(transform.a), abs(transform.e)), mode, max_rmse)
        partial = out.with_name(f".{out.name}.partial")
        partial.write_text(result.to_json())
        partial.replace(out)
        if apply_to is not None and not result.flagged:
            apply(image, result, apply_to)
    console = Console()
    console.print(f"offset x {result.offset_x_px:+.3f} px, y {result.offset_y_px:+.3f} px "
                  f"({result.offset_east_m:+.2f} m east, {result.offset_north_m:+.2f} m north); residual RMSE "
                  f"{result.rmse_px:.3f} px over {result.inliers}/{result.tie_points} tie points")
    if result.flagged:
        console.print(f"[yellow]flagged:[/] {'; '.join(result.notes)}" + (" (not applied)" if apply_to else ""))
