"""``musyq simulate``: a simulated Gaofen WFV Level-1A product of a real surface reflectance, with its truth."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from musyq.cli.options import console, user_errors
from musyq.core.errors import MusyqError


def _band_paths(pairs: list[str]) -> dict[str, Path]:
    paths = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        if not name or not path:
            raise MusyqError(f"{pair!r} is not NAME=FILE (blue=B02.tif)")
        paths[name.strip()] = Path(path)
    return paths


def _shape(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        lines, samples = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise MusyqError(f"--shape {text!r} is not LINESxSAMPLES (13400x12000)") from None
    if lines < 64 or samples < 64:
        raise MusyqError(f"--shape {text!r}: the image needs at least 64 x 64 pixels")
    return lines, samples


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.rstrip("Z")).replace(tzinfo=None)
    except ValueError:
        raise MusyqError(f"--datetime {text!r} is not an ISO 8601 time") from None


def simulate(
    bands: list[str] = typer.Argument(..., help="Surface reflectance bands as NAME=FILE (blue=B02.tif green=... "
                                      "red=... nir=...); reflectance or reflectance x 10000."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    tile: str = typer.Option(..., "--tile", "-t", help="MGRS tile of the truth grid."),
    source_sensor: str = typer.Option("S2A_MSI", "--source-sensor", help="Sensor the reflectance comes from."),
    sensor: str = typer.Option("GF1_WFV1", "--sensor", help="Camera to simulate (GF1_WFV1-4, GF6_WFV); another "
                               "sensor (S2B_MSI) gives its nadir TOA as a cross-calibration reference."),
    dem: Path | None = typer.Option(None, "--dem", help="Terrain heights (metres above the ellipsoid)."),
    aod: float = typer.Option(0.2, "--aod", help="Aerosol optical depth at 550 nm."),
    water_vapour: float = typer.Option(1.2, "--water-vapour", help="g/cm2."),
    view_zenith: float = typer.Option(32.0, "--view-zenith", help="View zenith at the scene centre (degrees)."),
    gain_error: float = typer.Option(0.0, "--gain-error", help="Relative error put into the DN (0.05: 5 %)."),
    rpc_bias: tuple[float, float] = typer.Option((0.0, 0.0), "--rpc-bias", help="Lines and samples the RPC "
                                                 "model is off by."),
    strips: int = typer.Option(1, "--strips", help="Column strips the image is cut into (GF-6 layout)."),
    shape: str | None = typer.Option(None, "--shape", help="Image size LINESxSAMPLES (default: what fits)."),
    clock: str = typer.Option("beijing", "--clock", help="How CenterTime is written: beijing or utc."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Calibration table over the shipped one."),
    when: str | None = typer.Option(None, "--datetime", help="Acquisition time, UTC (default: 11 April 2021 at "
                                    "10:30 local solar time)."),
    lambertian: bool = typer.Option(False, "--lambertian", help="A Lambertian surface instead of Roy et al.'s "
                                    "BRDF shape."),
) -> None:
    """Write GF*_WFV*_..._L1A*.tar.gz (labelled simulated) and its truth: the surface reflectance in the camera's
    bands on the 16 m grid of TILE."""
    from musyq.ard.simulate import Camera, simulate as run, simulate_reference
    from musyq.core.sensors import get_sensor

    with user_errors():
        if clock not in ("beijing", "utc"):
            raise MusyqError(f"--clock {clock!r}: choose beijing or utc")
        if strips < 1:
            raise MusyqError("--strips must be at least 1")
        camera = Camera(sensor=sensor.upper(), view_zenith=view_zenith, shape=_shape(shape), strips=strips,
                        aot550=aod, water_vapour=water_vapour, gain_error=gain_error, rpc_bias_px=rpc_bias,
                        clock=clock, acquired=_when(when), anisotropic=not lambertian)
        out.mkdir(parents=True, exist_ok=True)
        if get_sensor(sensor).family != "gaofen":
            reference = simulate_reference(_band_paths(bands), source_sensor, sensor, tile, out, camera, dem)
            console.print(f"simulated nadir TOA of {get_sensor(sensor).id}: {reference}")
            return
        result = run(_band_paths(bands), source_sensor, tile, out, camera, dem, calibration)
    console.print(f"simulated product: {result.product}\ntruth: {result.truth}" +
                  (f"\nterrain: {result.dem}" if result.dem else "") +
                  f"\nview zenith {result.view_zenith_range[0]:.1f}-{result.view_zenith_range[1]:.1f} deg; RPC fit "
                  f"residual {result.rpc_residual_px:.2g} px")
