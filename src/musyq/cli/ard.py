"""``musyq ard``: Level-1 products to surface-reflectance analysis-ready tiles on the MGRS grid."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from musyq.cli.options import console, user_errors
from musyq.cli.processing import (
    AerosolMethodOption,
    AerosolModelOption,
    AodOption,
    AodPriorOption,
    AodPriorViewOption,
    BandpassOption,
    BrdfPriorOption,
    CalibrationOption,
    CloudBufferOption,
    CoregisterBandOption,
    CorrectionOption,
    CoregisterOption,
    CoregisterRmseOption,
    DatetimeOption,
    DemOption,
    ElevationOption,
    LearnedModelOption,
    MaskMethodOption,
    NbarOption,
    OffsetOption,
    OzoneOption,
    ScaleOption,
    SensorOption,
    ShadowBufferOption,
    WaterVapourOption,
    atmosphere_options,
    bandpass_target,
    stack_options,
)
from musyq.ard.cloudmask import MaskMethod
from musyq.ard.surface import Correction
from musyq.core.errors import MusyqError
from musyq.ard.pipeline import (
    ArdOptions,
    CoregistrationOptions,
    MaskOptions,
    NbarOptions,
    TileResult,
    run_ard,
    select_tiles,
)
from musyq.io.readers import open_scene
from musyq.io.stac import update_collection
from musyq.core.tiling import ReflectanceResampling


def produce(inputs: list[Path], out: Path, options: ArdOptions, stack: object = None,
            calibration: Path | None = None) -> list[TileResult]:
    """Run the ARD pipeline on every input with a progress bar; returns the per-tile results."""
    results: list[TileResult] = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        for path in inputs:
            scene = open_scene(path, stack, calibration)  # type: ignore[arg-type]
            tiles = select_tiles(scene, options.tiles)
            task = progress.add_task(f"{scene.product_id[:48]}", total=len(tiles))

            def advance(tile: str, task_id=task) -> None:  # type: ignore[no-untyped-def]
                progress.update(task_id, description=f"{scene.product_id[:40]} {tile}")

            for result in run_ard(scene, out, options, progress=advance):
                results.append(result)
                progress.advance(task)
    written = [r.item_path for r in results if r.item_path.exists()]
    if written:
        update_collection(out, written)
    return results


def ard(
    inputs: list[Path] = typer.Argument(..., help="Level-1 products (folders, zips, MTL files, Gaofen .tar.gz archives)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    tile: list[str] = typer.Option([], "--tile", "-t", help="MGRS tile(s) to produce; default: all touched."),
    resolution: float = typer.Option(30.0, "--resolution", "-r", help="Output pixel size in metres."),
    resampling: ReflectanceResampling = typer.Option(ReflectanceResampling.bilinear, help="Reflectance resampling "
                                                     "when not coarsening (coarsening always averages)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo tiles that are already finished."),
    version: str = typer.Option("001", "--version-tag", help="Processing version in the file names."),
    sensor: str | None = SensorOption,
    when: str | None = DatetimeOption,
    scale: float = ScaleOption,
    offset: float = OffsetOption,
    aod: str = AodOption,
    water_vapour: str = WaterVapourOption,
    ozone: float = OzoneOption,
    aerosol_model: str = AerosolModelOption,
    aerosol_method: str = AerosolMethodOption,
    aod_prior: Path | None = AodPriorOption,
    aod_prior_view: str = AodPriorViewOption,
    elevation: float = ElevationOption,
    dem: Path | None = DemOption,
    mask_method: MaskMethod = MaskMethodOption,
    cloud_buffer: float | None = CloudBufferOption,
    shadow_buffer: float | None = ShadowBufferOption,
    nbar: bool = NbarOption,
    brdf_prior: Path | None = BrdfPriorOption,
    coregister_to: Path | None = CoregisterOption,
    coregister_band: str = CoregisterBandOption,
    coregister_max_rmse: float = CoregisterRmseOption,
    bandpass_to: str = BandpassOption,
    calibration: Path | None = CalibrationOption,
    correction: Correction = CorrectionOption,
    learned_model: Path | None = LearnedModelOption,
) -> None:
    """Make surface and TOA reflectance, aerosol, angle, quality and cloud-probability COGs plus STAC items for every
    tile touched."""
    with user_errors():
        if correction == Correction.learned and (aod.strip().lower() != "auto" or aod_prior is not None):
            raise MusyqError("--correction learned reads the atmosphere from the scene itself: --aod and "
                             "--aod-prior do not apply to it")
        options = ArdOptions(resolution=resolution, tiles=tuple(tile), version=version, resampling=resampling,
                             overwrite=overwrite, atmosphere=atmosphere_options(aod, water_vapour, ozone, aerosol_model,
                                                                     aod_prior, elevation, dem, aerosol_method,
                                                                     aod_prior_view),
                             mask=MaskOptions(mask_method, cloud_buffer, shadow_buffer),
                             nbar=NbarOptions(nbar, brdf_prior),
                             coregistration=CoregistrationOptions(coregister_to, coregister_band, coregister_max_rmse),
                             bandpass_to=bandpass_target(bandpass_to), correction=correction,
                             learned_model=learned_model)
        results = produce(inputs, out, options, stack_options(sensor, when, scale, offset), calibration)
    made = [r for r in results if not r.skipped]
    console.print(f"{len(made)} tile(s) written, {len(results) - len(made)} skipped; catalogue: {out / 'collection.json'}")
