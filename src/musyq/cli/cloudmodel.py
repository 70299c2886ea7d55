"""``musyq cloudmodel``: train the learned cloud classifier, and score any mask method on labelled patches."""

from __future__ import annotations

import csv
from pathlib import Path

import typer
from rich.table import Table

from musyq.ard import cloudmodel
from musyq.cli.options import console, user_errors
from musyq.cli.processing import MaskMethodOption
from musyq.ard.cloudmask import MaskMethod
from musyq.ard.cloudtrain import train
from musyq.core.errors import InputError
from musyq.ard.labelled import PatchScore, biome_patches, mask_patch, score_table

app = typer.Typer(help="The learned cloud classifier and labelled cloud patches.", no_args_is_help=True)


@app.command("build")
def build(
    patches: Path = typer.Option(..., "--patches", help="Folder of L8 Biome patches (images/ and masks/)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for the models; default: the package's own."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the pixel sample and the trees."),
) -> None:
    """Train one model per group of bands a sensor can have on the labelled patches, and write them."""
    with user_errors():
        labelled = biome_patches(patches)
        folder = out if out is not None else cloudmodel.model_folder()
        for groups in cloudmodel.MODEL_GROUPS:
            model = train(labelled, groups, seed)
            path = folder / f"{model.name}.npz"
            model.save(path)
            console.print(f"{path}: {model.roots.size} trees, {model.feature.size} nodes, "
                          f"{model.info['pixels']} pixels of {len(labelled)} patches")


def _suns(path: Path | None) -> dict[str, tuple[float, float]]:
    if path is None:
        return {}
    try:
        with path.open(newline="") as file:
            return {row["name"]: (float(row["sun_zenith"]), float(row["sun_azimuth"])) for row in csv.DictReader(file)}
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(path, f"expected CSV columns name, sun_zenith, sun_azimuth ({exc})") from None


@app.command("check")
def check(
    patches: Path = typer.Option(..., "--patches", help="Folder of L8 Biome patches (images/ and masks/)."),
    method: MaskMethod = MaskMethodOption,
    bands: str | None = typer.Option(None, "--bands", help="Use only these bands (comma-separated common names; "
                                     "add lwir11 for the thermal band), to emulate another sensor."),
    sun_zenith: float = typer.Option(40.0, "--sun-zenith", help="Sun zenith stated for patches not in --suns."),
    sun_azimuth: float = typer.Option(140.0, "--sun-azimuth", help="Sun azimuth stated for patches not in --suns."),
    suns: Path | None = typer.Option(None, "--suns", help="CSV of name, sun_zenith, sun_azimuth per patch."),
) -> None:
    """Score a mask method against the patches' labels: per patch, per biome and pooled."""
    with user_errors():
        stated = _suns(suns)
        chosen = tuple(b.strip() for b in bands.split(",")) if bands else None
        scores: list[PatchScore] = []
        for patch in biome_patches(patches):
            zenith, azimuth = stated.get(patch.name, (sun_zenith, sun_azimuth))
            scores.append(mask_patch(patch, method, zenith, azimuth, chosen))
    table = Table("patch", "overall accuracy", "cloud precision", "cloud recall", "shadow precision",
                  "shadow recall", "pixels")
    for name, score in score_table(scores):
        values = score.as_dict()
        table.add_row(name, *(f"{values[k]:.3f}" for k in ("accuracy", "cloud_precision", "cloud_recall",
                                                            "shadow_precision", "shadow_recall")),
                      f"{values['pixels']:.0f}")
    console.print(table)
