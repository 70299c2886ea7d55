"""Surface reflectance of a tile: settle the atmosphere (given or retrieved), then invert every pixel.

``correct_tile`` reads like the algorithm: geometry on a coarse grid -> water vapour -> aerosol ->
per-band coefficients on the coarse grid -> per-pixel inversion.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox

from musyq.ard.aerosol import (
    CLIMATOLOGY_AOT,
    Blocks,
    BlockState,
    Channel,
    Retrieval,
    ENDMEMBER_BANDS,
    dark_target_aot,
    endmember_aot,
    prior_surface_aot,
    water_vapour_from_band,
)
from musyq.ard import learned
from musyq.ard.learned import Emulator
from musyq.core.angles import fill_gaps
from musyq.ard.atmcor import Atmosphere, SigmaTerms, coarse_nodes, coefficients, correct_band, upsample
from musyq.core.errors import InputError, MusyqError
from musyq.ard.lut import AEROSOL_MODELS, BandTable, interpolation_rms
from musyq.core.sensors import Band, get_sensor
from musyq.core.tiling import warp_to

Array = NDArray[np.float64]

DEFAULT_AOT = CLIMATOLOGY_AOT
DEFAULT_WATER_VAPOUR = 1.5
DEFAULT_OZONE = 0.3
MAX_ELEVATION_M = 6500.0  # the tables hold 6S runs for targets up to 6 km (pressure ratio 0.45)
BLOCK_METRES = 6000.0
COEFFICIENT_STEP = 16  # pixels between coarse coefficient nodes
AEROSOL_METHODS = ("auto", "dark-target", "endmember")
MAX_AOT = 1.5  # the tables' last AOD node
# the expected error of an aerosol retrieval over land, +-(0.05 + 0.2 tau) (Kaufman et al. 1997), taken as one sigma
AOT_ERROR_BASE, AOT_ERROR_SLOPE = 0.05, 0.2
# an assumed (climatological) AOD is uncertain by about itself: the spread of land AOD around the global mean
CLIMATOLOGY_AOT_SIGMA = CLIMATOLOGY_AOT


def aot_sigma(aot550: Array, given: bool, assumed: bool) -> Array:
    """One sigma of the AOD: none for a value the user gave, the global spread for climatology, else the
    retrievals' expected error."""
    if given:
        return np.zeros_like(aot550)
    if assumed:
        return np.full_like(aot550, CLIMATOLOGY_AOT_SIGMA)
    return AOT_ERROR_BASE + AOT_ERROR_SLOPE * aot550


class Correction(str, Enum):
    """How TOA becomes surface reflectance: the 6S tables with retrieved aerosol and vapour, or the learned
    emulator (no retrieval; for sensors without the bands a retrieval needs)."""

    physical = "physical"
    learned = "learned"


@dataclass(frozen=True)
class AtmosphereOptions:
    """What the user fixed; ``None`` asks for a retrieval from the image."""

    aot550: float | None = None
    water_vapour: float | None = None
    ozone: float = DEFAULT_OZONE
    aerosol_model: str = "continental"
    # auto: dark target where there is a 2.2 um band and dark vegetation, else the endmember fit
    aerosol_method: str = "auto"
    aot_prior: Path | None = None  # surface reflectance of the same place, for sensors without 2.2 um
    prior_at_nadir: bool = True  # the prior is seen from nadir (an NBAR product), not in this scene's geometry
    elevation_m: float = 0.0  # surface height when no DEM is given
    dem: Path | None = None

    def __post_init__(self) -> None:
        if self.aerosol_model not in AEROSOL_MODELS:
            raise MusyqError(f"unknown aerosol model {self.aerosol_model!r}; choose from {', '.join(AEROSOL_MODELS)}")
        if self.aerosol_method not in AEROSOL_METHODS:
            raise MusyqError(f"unknown aerosol retrieval {self.aerosol_method!r}; choose from {', '.join(AEROSOL_METHODS)}")
        if self.aot550 is not None and not 0.0 <= self.aot550 <= 1.5:
            raise MusyqError(f"AOD {self.aot550} is outside the tables (0 to 1.5)")
        if self.water_vapour is not None and not 0.0 <= self.water_vapour <= 8.0:
            raise MusyqError(f"water vapour {self.water_vapour} g/cm2 is outside 0 to 8")
        if not -500.0 <= self.elevation_m <= MAX_ELEVATION_M:
            raise MusyqError(f"elevation {self.elevation_m} m is outside -500 to {MAX_ELEVATION_M:g}")
        if not 0.0 <= self.ozone <= 1.0:
            raise MusyqError(f"ozone {self.ozone} cm-atm is outside 0 to 1")


@dataclass(frozen=True)
class SurfaceResult:
    """Surface reflectance of the surface bands and the atmosphere that produced it (full resolution)."""

    bands: tuple[Band, ...]
    reflectance: NDArray[np.float32]
    # one sigma of the reflectance: calibration, AOD and table interpolation so far; NBAR and the bandpass
    # adjustment add their terms when they act
    uncertainty: NDArray[np.float32]
    aot550: NDArray[np.float32]
    water_vapour: float  # mean over the covered part, g cm-2
    notes: dict[str, str]
    aot_assumed: bool = False  # the AOD is climatology: the scene gave too little for a retrieval


def _coarse_geometry(angles: NDArray[np.float32], rows: NDArray[np.intp], cols: NDArray[np.intp]) -> tuple[Array, Array, Array]:
    """Sun zenith, view zenith and relative azimuth at the grid points (gaps from the nearest point)."""
    sun_azimuth, sun_zenith, view_azimuth, view_zenith = (
        np.asarray(a[np.ix_(rows, cols)], dtype=np.float64) for a in angles)
    return fill_gaps(sun_zenith), fill_gaps(view_zenith), fill_gaps(sun_azimuth - view_azimuth)


def _channels(bands: tuple[Band, ...], toa: NDArray[np.float32], names: tuple[str, ...]) -> dict[str, Channel] | None:
    by_name: dict[str, Channel] = {}
    for band, values in zip(bands, toa, strict=True):
        by_name.setdefault(band.common_name, Channel(band.id, values))
    if "nir" not in by_name and "nir08" in by_name:
        by_name["nir"] = by_name["nir08"]
    if all(n in by_name for n in names):
        return {n: by_name[n] for n in names}
    return None


def _block_heights(elevation: NDArray[np.float32] | None, blocks: Blocks, default_m: float) -> Array:
    """Mean terrain height per block in km (the table covers sea level to 6.5 km)."""
    if elevation is None:
        return np.full(blocks.grid, np.clip(default_m / 1000.0, 0.0, MAX_ELEVATION_M / 1000.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks without DEM data
        heights = np.nanmean(blocks.split(elevation), axis=-1) / 1000.0
    heights[~np.isfinite(heights)] = default_m / 1000.0
    return np.asarray(np.clip(heights, 0.0, MAX_ELEVATION_M / 1000.0), dtype=np.float64)


def _water_vapour(
    table: BandTable, bands: tuple[Band, ...], toa: NDArray[np.float32], valid: NDArray[np.bool_], blocks: Blocks,
    state: BlockState, options: AtmosphereOptions,
) -> tuple[Array, str]:
    if options.water_vapour is not None:
        return np.full(blocks.grid, options.water_vapour), f"given {options.water_vapour}"
    channels = _channels(bands, toa, ("wv", "nir08"))
    if channels is None:
        return np.full(blocks.grid, DEFAULT_WATER_VAPOUR), f"default {DEFAULT_WATER_VAPOUR} (no 945 nm band)"
    first_guess = options.aot550 if options.aot550 is not None else DEFAULT_AOT
    vapour = water_vapour_from_band(table, channels, valid, blocks, state, first_guess, DEFAULT_WATER_VAPOUR)
    return vapour.values, vapour.note


def _aerosol(
    table: BandTable, bands: tuple[Band, ...], toa: NDArray[np.float32], valid: NDArray[np.bool_], blocks: Blocks,
    state: BlockState, options: AtmosphereOptions, prior: dict[str, NDArray[np.float32]] | None,
    clear: NDArray[np.bool_] | None = None,
) -> Retrieval:
    if options.aot550 is not None:
        return Retrieval(np.full(blocks.grid, options.aot550), f"given {options.aot550}")
    visible = _channels(bands, toa, ("blue", "red"))
    if prior is not None and visible is not None:
        return prior_surface_aot(table, visible, prior, valid, blocks, state, DEFAULT_AOT, clear, options.prior_at_nadir)
    dark_target = _channels(bands, toa, ("blue", "red", "nir", "swir22"))
    vnir = _channels(bands, toa, ENDMEMBER_BANDS)
    method = options.aerosol_method
    if method == "dark-target" and dark_target is None:
        raise MusyqError(f"{table.sensor_id} has no 2.2 um band for a dark-target aerosol retrieval; "
                         "use --aerosol-method endmember or give --aod")
    if method == "endmember" and vnir is None:
        raise MusyqError(f"the endmember aerosol retrieval needs {', '.join(ENDMEMBER_BANDS)}; "
                         f"{table.sensor_id} lacks some of them (give --aod)")
    if method != "endmember" and dark_target is not None:
        # in auto mode thin dark-target evidence hands over to the endmember fit, and its warning goes with it
        hand_over = method == "auto" and vnir is not None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = dark_target_aot(table, dark_target, valid, blocks, state, DEFAULT_AOT)
        if not (result.assumed and hand_over):
            for warning in caught:
                warnings.warn(warning.message, stacklevel=3)
            return result
    if vnir is None:
        warnings.warn(f"{table.sensor_id} has neither a 2.2 um band nor blue, green, red and nir for an aerosol "
                      f"retrieval; AOD {DEFAULT_AOT} assumed (give --aod)", stacklevel=3)
        return Retrieval(np.full(blocks.grid, DEFAULT_AOT), f"climatology {DEFAULT_AOT} (no bands to retrieve from)",
                         assumed=True)
    return endmember_aot(table, vnir, valid, blocks, state, DEFAULT_AOT)


def correct_tile(
    table: BandTable, bands: tuple[Band, ...], toa: NDArray[np.float32], angles: NDArray[np.float32],
    valid: NDArray[np.bool_], resolution: float, options: AtmosphereOptions,
    prior: dict[str, NDArray[np.float32]] | None = None, elevation: NDArray[np.float32] | None = None,
    clear: NDArray[np.bool_] | None = None,
) -> SurfaceResult:
    """Surface reflectance of every surface band of a TOA stack on one tile window.

    ``prior`` (blue and red surface reflectance on the same pixels) drives the aerosol retrieval
    when given; otherwise dark targets do, where the sensor has a 2.2 um band. ``elevation`` (metres,
    per pixel) sets the surface pressure; without it ``options.elevation_m`` does. ``clear`` (the
    quality mask's clear land) keeps cloud, shadow, water and snow out of the retrievals.
    """
    shape = (int(toa.shape[1]), int(toa.shape[2]))
    blocks = Blocks(max(round(BLOCK_METRES / resolution), 8), shape)
    geometry = _coarse_geometry(angles, *(np.round(c).astype(np.intp) for c in blocks.centres()))
    heights = _block_heights(elevation, blocks, options.elevation_m)

    def state(water_vapour: Array) -> BlockState:
        return BlockState(*geometry, water_vapour, heights, options.ozone, options.aerosol_model)

    usable = valid if clear is None else valid & clear
    vapour_block, vapour_note = _water_vapour(table, bands, toa, usable, blocks, state(np.ones(blocks.grid)), options)
    if prior is not None:  # the prior screens the pixels itself, the mask's clear ones preferred
        aerosol = _aerosol(table, bands, toa, valid, blocks, state(vapour_block), options, prior, clear)
    else:
        aerosol = _aerosol(table, bands, toa, usable, blocks, state(vapour_block), options, prior)
    notes = {"water_vapour": vapour_note, "aot550": aerosol.note}

    rows, cols = coarse_nodes(shape[0], COEFFICIENT_STEP), coarse_nodes(shape[1], COEFFICIENT_STEP)
    sun, view, azimuth = _coarse_geometry(angles, rows, cols)
    aot_nodes = blocks.interpolate(aerosol.values, rows, cols)
    vapour_nodes = blocks.interpolate(vapour_block, rows, cols)
    height_nodes = blocks.interpolate(heights, rows, cols)
    atmosphere = Atmosphere(aot_nodes, vapour_nodes, options.ozone, options.aerosol_model, height_nodes)
    sigma_nodes = aot_sigma(aot_nodes, options.aot550 is not None, aerosol.assumed)
    # the AOD's effect is the secant to a shifted AOD: up by its sigma, or as far as the tables reach
    shift = np.maximum(np.minimum(sigma_nodes, MAX_AOT - aot_nodes), 1e-3)
    shifted_atmosphere = Atmosphere(aot_nodes + shift, vapour_nodes, options.ozone, options.aerosol_model,
                                    height_nodes)
    calibration = get_sensor(table.sensor_id).toa_uncertainty
    interpolation = interpolation_rms(table.sensor_id)
    surface_bands = tuple(b for b in bands if b.id in table.surface_bands)
    reflectance = np.empty((len(surface_bands), *shape), dtype=np.float32)
    uncertainty = np.empty_like(reflectance)
    for k, band in enumerate(surface_bands):
        coef = coefficients(table, band.id, atmosphere, sun, view, azimuth)
        terms = SigmaTerms(coefficients(table, band.id, shifted_atmosphere, sun, view, azimuth), sigma_nodes / shift,
                           calibration, interpolation)
        correct_band(toa[bands.index(band)], coef, rows, cols, reflectance[k], (uncertainty[k], terms))
    aot_full = upsample(aot_nodes, rows, cols, shape)
    aot_full[~valid] = np.nan
    covered = valid[np.ix_(rows, cols)]
    mean_vapour = float(vapour_nodes[covered].mean()) if covered.any() else float(vapour_nodes.mean())
    return SurfaceResult(surface_bands, reflectance, uncertainty, aot_full, mean_vapour, notes, aerosol.assumed)


def load_prior(path: Path, geobox: GeoBox) -> dict[str, NDArray[np.float32]]:
    """Blue and red surface reflectance from a raster whose band descriptions name them (a musyq SR COG),
    resampled onto ``geobox``."""
    try:
        with rasterio.open(path) as source:
            names = [d or "" for d in source.descriptions]
            if "blue" not in names or "red" not in names:
                raise InputError(path, f"an aerosol prior needs bands described as blue and red; it has {names}")
            return {name: warp_to(source, names.index(name), geobox) for name in ("blue", "red")}
    except rasterio.RasterioIOError as exc:
        raise InputError(path, f"cannot read the aerosol prior: {exc}") from None


def load_elevation(path: Path, geobox: GeoBox) -> NDArray[np.float32]:
    """Terrain height in metres from a DEM (first band), resampled onto ``geobox``."""
    try:
        with rasterio.open(path) as source:
            return warp_to(source, 0, geobox)
    except rasterio.RasterioIOError as exc:
        raise InputError(path, f"cannot read the elevation model: {exc}") from None


def correct_tile_learned(
    emulator: Emulator, bands: tuple[Band, ...], toa: NDArray[np.float32], angles: NDArray[np.float32],
    valid: NDArray[np.bool_], options: AtmosphereOptions, elevation: NDArray[np.float32] | None = None,
    clear: NDArray[np.bool_] | None = None, with_calibration: bool = True,
) -> SurfaceResult:
    """Surface reflectance of the emulator's bands from the learned correction: no retrieval, the atmosphere
    read by the network from the tile's clear land. The AOD and water vapour stay unknown (NaN). The sigma is
    the emulator's with the TOA calibration's term unless ``with_calibration`` is false."""
    shape = (int(toa.shape[1]), int(toa.shape[2]))
    rows, cols = coarse_nodes(shape[0], COEFFICIENT_STEP), coarse_nodes(shape[1], COEFFICIENT_STEP)
    sun, view, azimuth = _coarse_geometry(angles, rows, cols)
    heights = np.full(sun.shape, options.elevation_m, dtype=np.float64)
    if elevation is not None:
        sampled = np.asarray(elevation[np.ix_(rows, cols)], dtype=np.float64)
        heights = np.where(np.isfinite(sampled), sampled, heights)
    heights = np.clip(heights / 1000.0, 0.0, MAX_ELEVATION_M / 1000.0)
    result = learned.correct_tile(emulator, tuple(b.id for b in bands), toa, (sun, view, azimuth), rows, cols, valid,
                                  valid if clear is None else clear, heights, options.water_vapour,
                                  get_sensor(emulator.sensor_id).toa_uncertainty if with_calibration else 0.0)
    surface_bands = tuple(b for b in bands if b.id in result.bands)
    order = [result.bands.index(b.id) for b in surface_bands]
    reflectance, uncertainty = result.reflectance, result.uncertainty
    if order != sorted(order):  # a copy only where the scene lists the bands in another order
        reflectance, uncertainty = reflectance[order], uncertainty[order]
    aot = np.full(shape, np.nan, dtype=np.float32)
    return SurfaceResult(surface_bands, reflectance, uncertainty, aot, float("nan"), {"context": result.context_note})
