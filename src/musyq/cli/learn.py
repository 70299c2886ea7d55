"""``musyq learn``: train and check the learned atmospheric correction."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from musyq.ard import learned
from musyq.cli.options import user_errors
from musyq.core.errors import InputError, MusyqError
from musyq.core.sensors import resolve_sensor_id

app = typer.Typer(help="A learned TOA-to-surface correction, taught by musyq's 6S tables.", no_args_is_help=True)


@app.command("build")
def build(
    sensor: str = typer.Option(..., "--sensor", help="Sensor to teach the correction for (e.g. GF1_WFV1)."),
    bands: str | None = typer.Option(None, "--bands", help="Band ids or common names, comma-separated; default: "
                                     "every surface band (that the --surfaces have)."),
    surfaces: list[Path] = typer.Option([], "--surfaces", help="Real surface reflectance to draw half the scenes "
                                        "from: musyq SR COGs (or folders of them) with their MASK, e.g. from "
                                        "`musyq ard --no-nbar --bandpass-to SENSOR` of Sentinel-2 scenes."),
    out: Path = typer.Option(..., "--out", "-o", help="Model file to write (.npz)."),
    scenes: int = typer.Option(2000, "--scenes", help="Simulated training scenes of 256 pixels."),
    members: int = typer.Option(3, "--members", help="Networks in the ensemble (their spread is the uncertainty)."),
    hidden: str = typer.Option("32,32", "--hidden", help="Hidden layer widths, comma-separated."),
    epochs: int = typer.Option(30, "--epochs", help="Training passes over the cases."),
    seed: int = typer.Option(1, "--seed", help="Random seed of the library, atmospheres and networks."),
) -> None:
    """Simulate scenes (the spectral library under random atmospheres and geometries, through the 6S tables)
    and train an ensemble to map TOA, angles and the scene's dark-object percentiles to surface reflectance."""
    with user_errors():
        chosen = tuple(b.strip() for b in bands.split(",")) if bands else None
        widths = tuple(int(w) for w in hidden.split(","))
        with Console().status(f"training {members} network(s) on {scenes} simulated scenes"):
            emulator = learned.build(resolve_sensor_id(sensor), chosen, scenes, members, widths, epochs, seed,
                                     surface_files(surfaces))
        path = emulator.save(out)
    Console().print(f"{path}: {emulator.sensor_id} {', '.join(emulator.bands)}; validation RMSE "
                    + ", ".join(f"{b} {v:.4f}" for b, v in emulator.record["validation_rmse"].items()))  # type: ignore[attr-defined]


def surface_files(paths: list[Path]) -> tuple[Path, ...]:
    """SR COGs given or found in the folders given, those with too little clear land for a scene left out."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("*.SR.tif"))
            files += [f for f in found if learned.clear_land_pixels(f) >= learned.PIXELS_PER_SCENE]
            if not found:
                raise InputError(path, "holds no musyq SR COG (*.SR.tif)")
        elif path.exists():
            files.append(path)
        else:
            raise InputError(path, "does not exist")
    return tuple(files)


@app.command("check")
def check(
    model: Path = typer.Argument(..., help="Model file written by `musyq learn build`."),
    scenes: int = typer.Option(300, "--scenes", help="Held-out simulated scenes."),
    seed: int = typer.Option(77, "--seed", help="Seed of the held-out library, atmospheres and geometries "
                             "(other than the model's own)."),
) -> None:
    """Accuracy on held-out simulated scenes: surfaces, atmospheres and geometries the model was not trained
    on; per band and per AOD range, and how often the uncertainty covers the error."""
    with user_errors():
        emulator = learned.load_emulator(model)
        own = emulator.record.get("seed")
        if isinstance(own, int) and seed in (own, own + 1):
            raise MusyqError(f"seed {seed} is the model's own training or validation seed; take another")
        result = learned.check(emulator, learned.simulate_cases(emulator.sensor_id, emulator.bands, scenes, seed))
    table = Table("AOD", *emulator.bands, title=f"{emulator.sensor_id}: RMSE against the true surface")
    for bin_, values in result.rmse_by_aot.items():
        table.add_row(bin_, *(f"{values[b]:.4f}" for b in emulator.bands))
    table.add_row("all", *(f"{result.rmse[b]:.4f}" for b in emulator.bands))
    table.add_row("bias", *(f"{result.bias[b]:+.4f}" for b in emulator.bands))
    console = Console()
    console.print(table)
    console.print(f"{result.pixels} held-out pixels; the uncertainty covers {100 * result.coverage:.1f}% of the "
                  "errors (68.3% for a right one sigma)")
