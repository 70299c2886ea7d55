"""``musyq bandpass``: regenerate and inspect the spectral bandpass coefficients."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from musyq.ard import bandpass
from musyq.cli.options import user_errors
from musyq.core.sensors import resolve_sensor_id

app = typer.Typer(help="Spectral bandpass adjustment coefficients between sensors.", no_args_is_help=True)


@app.command("build")
def build(
    count: int = typer.Option(3000, "--count", help="Spectra in the generated library."),
    seed: int = typer.Option(1, "--seed", help="Random seed of the library."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Table to write; default: the package's own."),
) -> None:
    """Generate the spectral library (PROSAIL canopies and soils; waters) and fit every pair of sensors, and the
    mixes that synthesize the Sentinel-2 bands other sensors lack (for the biophysical networks) and the GF-6 bands
    a four-band source lacks (for simulations)."""
    with user_errors():
        table = bandpass.build_table(count, seed)
        path = bandpass.save_table(table, out or bandpass.table_path())
        mixes = bandpass.build_synthesis(count, seed)
        mixes_path = bandpass.save_table(mixes, out.with_name(bandpass.SYNTHESIS) if out else bandpass.synthesis_path())
    Console().print(f"{path}: coefficients for {len(table['pairs'])} source sensors")  # type: ignore[arg-type]
    Console().print(f"{mixes_path}: band synthesis for {len(mixes['pairs'])} source sensors")  # type: ignore[arg-type]


@app.command("endmembers")
def endmembers(
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV to write; default: the package's own."),
) -> None:
    """Regenerate the vegetation and soil spectra of the endmember aerosol retrieval (PROSAIL)."""
    with user_errors():
        path = bandpass.save_endmembers(out)
    Console().print(f"{path}: vegetation and soil reflectance, 400-2500 nm")


@app.command("show")
def show(
    source: str = typer.Argument(..., help="Sensor whose bands are adjusted."),
    target: str = typer.Argument("L8_OLI", help="Reference sensor."),
) -> None:
    """Print the coefficients and fit statistics from SOURCE to TARGET."""
    with user_errors():
        fits = bandpass.coefficients(resolve_sensor_id(source), resolve_sensor_id(target))
    table = Table("surface", "band", "to", "slope", "offset", "R²", "RMSE", "RMSE held out", "origin")
    for fit in fits:
        table.add_row(fit.surface, fit.source_band, fit.target_band, f"{fit.slope:.4f}", f"{fit.offset:+.4f}",
                      f"{fit.r2:.5f}", f"{fit.rmse:.4f}", f"{fit.rmse_holdout:.4f}", fit.origin)
    Console().print(table)
