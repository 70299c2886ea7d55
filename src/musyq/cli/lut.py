"""``musyq lut``: build the atmospheric lookup tables from 6S, and check them against direct 6S runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from musyq.ard import lut as tables
from musyq.cli.options import console, user_errors
from musyq.ard.lutcheck import record_round_trip, round_trip
from musyq.core.sensors import available_sensors, get_sensor

app = typer.Typer(help="Atmospheric lookup tables (6S).", no_args_is_help=True)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console)


@app.command("build")
def build(
    sensor: list[str] = typer.Option([], "--sensor", "-s", help="Sensor(s) to build; default: every sensor."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for the tables; default: the package's own."),
    cache: Path = typer.Option(Path.home() / ".cache" / "musyq" / "6s", "--cache",
                               help="Where finished 6S slices are kept, so that a rerun resumes."),
    workers: int = typer.Option(2, "--workers", "-j", help="Concurrent 6S processes."),
    rebuild_scattering: bool = typer.Option(False, "--rebuild-scattering",
                                            help="Rerun the monochromatic 6S table even if one is saved."),
) -> None:
    """Run 6S for the scattering table (once, shared) and the gas curves of every band, then write the tables."""
    with user_errors():
        sensor_ids = [get_sensor(s).id for s in sensor] or [s for s in available_sensors()
                                                             if get_sensor(s).srf_file is not None]
        folder = out if out is not None else tables.table_folder()
        with _progress() as progress:
            scattering = None if rebuild_scattering else tables.load_scattering(folder)
            if scattering is None:
                task = progress.add_task("scattering (monochromatic 6S)", total=tables.scattering_run_count())
                scattering = tables.build_scattering(cache / "scattering", workers, lambda: progress.advance(task))
                tables.save_scattering(scattering, folder)
            for sensor_id in sensor_ids:
                runs = len(get_sensor(sensor_id).reflective_bands) * len(tables.GAS_AIR_MASS)
                task = progress.add_task(f"{sensor_id} gas curves (band 6S)", total=runs)

                def advance(task_id: TaskID = task) -> None:
                    progress.advance(task_id)

                gas = tables.build_gas_curves(sensor_id, cache, workers, advance)
                table = tables.build_band_table(sensor_id, scattering, gas)
                tables.save_table(table, tables.table_path(sensor_id, folder))
    console.print(f"{len(sensor_ids)} table(s) written to {folder}")


@app.command("check")
def check(
    sensor: str = typer.Option(..., "--sensor", "-s", help="Sensor whose table to check."),
    cases: int = typer.Option(40, "--cases", "-n", help="Random off-grid cases to simulate with 6S."),
    seed: int = typer.Option(1, "--seed"),
    max_elevation: float = typer.Option(0.0, "--max-elevation", help="Spread the targets from sea level to this "
                                        "height (km)."),
    max_view: float = typer.Option(12.0, "--max-view", help="Spread the view zenith from nadir to this angle "
                                   "(degrees): 12 for Sentinel-2 and Landsat, about 35 for Gaofen WFV, 65 for MODIS."),
    workers: int = typer.Option(2, "--workers", "-j"),
    record: bool = typer.Option(False, "--record", help="Keep the RMS error beside the table, where the SR "
                                "uncertainty takes its interpolation term from."),
) -> None:
    """Simulate random cases with band-integrated 6S and report how well the table inverts them."""
    with user_errors():
        report = round_trip(get_sensor(sensor).id, cases, seed=seed, workers=workers, max_elevation_km=max_elevation,
                            max_view_zenith=max_view)
    table = Table("band", "cases", "mean error", "max |error| (AOT<=0.5)", "max |error| (AOT>0.5)")
    for band, errors in report.by_band().items():
        table.add_row(band, str(errors.count), f"{errors.mean:+.5f}", f"{errors.worst(errors.low_aerosol):.5f}",
                      f"{errors.worst(errors.high_aerosol):.5f}")
    console.print(table)
    rms = float(np.sqrt(np.mean(report.error**2)))
    console.print(f"RMS error over all {report.error.size} cases: {rms:.5f}")
    if record:
        console.print(f"recorded in {record_round_trip(get_sensor(sensor).id, report, max_view)}")
