"""Options of the commands that process Level-1 scenes (ard, mask, info, cloudmodel): band files without
metadata, the atmosphere, the cloud mask, co-registration, NBAR and bandpass."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from musyq.ard.cloudmask import METHODS, MaskMethod
from musyq.ard.coregister import DEFAULT_MAX_RMSE
from musyq.ard.surface import AtmosphereOptions, Correction
from musyq.core.errors import MusyqError
from musyq.core.sensors import resolve_sensor_id
from musyq.io.readers import StackOptions

SensorOption = typer.Option(None, "--sensor", help="Sensor of plain band files without metadata (e.g. S2A, L8_OLI).")
DatetimeOption = typer.Option(None, "--datetime", help="Acquisition time (UTC, ISO 8601) of plain band files.")
ScaleOption = typer.Option(10000.0, "--scale", help="Plain band files: DN per unit reflectance.")
OffsetOption = typer.Option(0.0, "--offset", help="Plain band files: DN offset added before scaling.")


def stack_options(sensor: str | None, when: str | None, scale: float, offset: float) -> StackOptions | None:
    """What the user said about band files that carry no metadata."""
    if sensor is None and when is None:
        return None
    if sensor is None or when is None:
        raise MusyqError("plain band files need both --sensor and --datetime")
    try:
        acquired = datetime.fromisoformat(when.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError as exc:
        raise MusyqError(f"--datetime {when!r} is not an ISO 8601 time") from exc
    return StackOptions(sensor=sensor, acquired=acquired, scale=scale, offset=offset)


AodOption = typer.Option("auto", "--aod", help="Aerosol optical depth at 550 nm: 'auto' (retrieved, see "
                         "--aerosol-method), a value, or 'off' for no atmospheric correction.")
AerosolMethodOption = typer.Option("auto", "--aerosol-method", help="Aerosol retrieval: 'dark-target' (needs a 2.2 um "
                                   "band), 'endmember' (blue, green, red and NIR of vegetated pixels), or 'auto' "
                                   "(dark target where it can run, else endmember).")
WaterVapourOption = typer.Option("auto", "--water-vapour", help="Column water vapour in g/cm2, or 'auto' "
                                 "(from the 945 nm band where the sensor has one, else 1.5).")
OzoneOption = typer.Option(0.3, "--ozone", help="Ozone column in cm-atm (0.3 = 300 DU).")
AerosolModelOption = typer.Option("continental", "--aerosol-model", help="6S aerosol model: continental or maritime.")
AodPriorOption = typer.Option(None, "--aod-prior", help="Surface reflectance of the same place (a musyq SR COG) "
                              "to retrieve the aerosol from, for sensors without a 2.2 um band (Gaofen WFV).")
AodPriorViewOption = typer.Option("nadir", "--aod-prior-view", help="How the --aod-prior sees the surface: 'nadir' "
                                  "(an NBAR product, put into this scene's view by Roy et al.'s BRDF shape) or "
                                  "'scene' (already in this scene's sun and view, e.g. its own correction).")


def _auto_or_number(name: str, text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise MusyqError(f"{name} takes 'auto' or a number, not {text!r}") from None


ElevationOption = typer.Option(0.0, "--elevation", help="Surface height in metres (sets the pressure) "
                               "where no --dem is given.")
DemOption = typer.Option(None, "--dem", help="Elevation model (metres) for the surface pressure.")


def atmosphere_options(
    aod: str, water_vapour: str, ozone: float, aerosol_model: str, aot_prior: Path | None = None,
    elevation: float = 0.0, dem: Path | None = None, aerosol_method: str = "auto", aot_prior_view: str = "nadir",
) -> AtmosphereOptions | None:
    """The atmospheric correction the user asked for, or ``None`` for TOA only."""
    if aod.strip().lower() == "off":
        return None
    if aot_prior_view not in ("nadir", "scene"):
        raise MusyqError(f"--aod-prior-view takes 'nadir' or 'scene', not {aot_prior_view!r}")
    return AtmosphereOptions(aot550=_auto_or_number("--aod", aod),
                             water_vapour=_auto_or_number("--water-vapour", water_vapour),
                             ozone=ozone, aerosol_model=aerosol_model, aerosol_method=aerosol_method,
                             aot_prior=aot_prior, prior_at_nadir=aot_prior_view == "nadir",
                             elevation_m=elevation, dem=dem)


MaskMethodOption = typer.Option(MaskMethod.musyq, "--mask-method", help="Cloud-mask method.")
CloudBufferOption = typer.Option(None, "--cloud-buffer", help="Grow clouds by this many metres "
                                 f"(default: the method's own; musyq {METHODS[MaskMethod.musyq].cloud_buffer_m:g}, "
                                 f"{METHODS[MaskMethod.musyq].vnir_cloud_buffer_m:g} with blue, green, red and nir "
                                 "alone on pixels finer than 30 m).")
ShadowBufferOption = typer.Option(None, "--shadow-buffer", help="Grow cloud shadows by this many metres "
                                  f"(default: the method's own; musyq {METHODS[MaskMethod.musyq].shadow_buffer_m:g}).")


NbarOption = typer.Option(True, "--nbar/--no-nbar", help="Normalize surface reflectance to nadir view and the HLS "
                          "standard sun (c-factor, RossThick-LiSparse-R).")
BrdfPriorOption = typer.Option(None, "--brdf-prior", help="Per-pixel BRDF parameters (bands described as "
                               "<band>_iso, <band>_vol, <band>_geo, any grid) to use instead of the fixed ones.")


CoregisterOption = typer.Option(None, "--coregister-to", help="Reference raster of the same place: each tile is "
                                "moved onto it by the global sub-pixel offset of the shared band.")
CoregisterBandOption = typer.Option("nir", "--coregister-band", help="Band the scene and the reference share "
                                    "(its description in the reference).")
CoregisterRmseOption = typer.Option(DEFAULT_MAX_RMSE, "--coregister-max-rmse", help="Tiles whose tie-point "
                                    "residual RMSE is above this many pixels are flagged and left where they are.")


CalibrationOption = typer.Option(None, "--calibration", help="Radiometric calibration table laid over the shipped "
                                 "one (Gaofen: JSON of gains by camera and year).")
CorrectionOption = typer.Option(Correction.physical, "--correction", help="TOA to surface: the 6S tables with "
                                "retrieved aerosol and vapour (physical), or the emulator taught by them (learned), "
                                "for sensors without the bands a retrieval needs.")
LearnedModelOption = typer.Option(None, "--learned-model", help="Model of `musyq learn build` for --correction "
                                  "learned (default: the one musyq ships for the sensor).")
BandpassOption = typer.Option("L8_OLI", "--bandpass-to", help="Adjust the surface reflectance to this sensor's "
                              "bands (HLS coefficients where published, else musyq's); 'none' to keep them.")


def bandpass_target(text: str) -> str | None:
    """The sensor id to adjust to, or None for no adjustment."""
    return None if text.strip().lower() == "none" else resolve_sensor_id(text)
