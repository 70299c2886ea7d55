"""The ARD driver: read a Level-1 scene, and for every tile it touches produce reflectance, angle and quality layers.

Reads like the recipe: ``open_scene -> tiles_touching ->`` per tile ``warp -> calibrate -> co-register ->
mask clouds -> correct the atmosphere -> normalize the BRDF -> adjust the bandpasses -> write``; the quality
layer's second band collects a flag from every stage that acted.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox

from musyq.ard.bandpass import adjust, coefficients
from musyq.ard.brdf import KernelGrids, load_brdf_parameters, nbar_sun_zenith, normalize_band
from musyq.ard.cloudmask import MaskInputs, MaskMethod, SceneThresholds, compute_mask, learn_thresholds
from musyq.ard.coregister import (
    DEFAULT_MAX_RMSE,
    Mode,
    Registration,
    band_aliases,
    load_reference_band,
    register,
)
from musyq.core.errors import GridError, InputError, MissingBandError
from musyq.core.grid import Tile, crs_wkt, get_tile, tiles_touching
from musyq.ard.lut import has_table, load_table
from musyq.io.output import (
    ANGLE_NODATA,
    ANGLE_SCALE,
    AOD_CLIMATOLOGY,
    BANDPASS,
    CLEAR,
    CLOUD,
    CLOUD_SHADOW,
    COREGISTERED,
    DATA,
    FILL,
    NBAR,
    NBAR_PRIOR,
    PROBABILITY_NODATA,
    REFLECTANCE_SCALE,
    SATURATED,
    SNOW,
    SURFACE_REFLECTANCE,
    TEMPERATURE_SCALE,
    WATER,
    Layer,
    ProductName,
    encode_angles,
    encode_reflectance,
    encode_temperature,
    write_cog,
)
from musyq.core.scene import BandSource, Scene
from musyq.core.sensors import Band
from musyq.io.stac import AssetSpec, build_item, mean_angle, save_item
from musyq.ard.learned import Emulator, load_emulator, shipped_model
from musyq.ard.surface import (
    AtmosphereOptions,
    Correction,
    SurfaceResult,
    correct_tile,
    correct_tile_learned,
    load_elevation,
    load_prior,
)
from musyq.core.tiling import ReflectanceResampling, Terrain, read_overview, warp_band
from musyq.ard.toa import calibrate

Progress = Callable[[str], None]


@dataclass(frozen=True)
class MaskOptions:
    """Which cloud-mask method runs, and buffer distances other than the method's own."""

    method: MaskMethod = MaskMethod.musyq
    cloud_buffer_m: float | None = None
    shadow_buffer_m: float | None = None


@dataclass(frozen=True)
class NbarOptions:
    """BRDF normalization of the surface reflectance; ``brdf_prior`` holds per-pixel parameters."""

    enabled: bool = True
    brdf_prior: Path | None = None


@dataclass(frozen=True)
class CoregistrationOptions:
    """Co-registration of every tile to a reference raster on a shared band; flagged above ``max_rmse`` px."""

    reference: Path | None = None
    band: str = "nir"
    max_rmse: float = DEFAULT_MAX_RMSE


@dataclass(frozen=True)
class ArdOptions:
    """Choices that shape the ARD outputs."""

    resolution: float = 30.0
    tiles: tuple[str, ...] = ()
    version: str = "001"
    resampling: ReflectanceResampling = ReflectanceResampling.bilinear
    overwrite: bool = False
    threads: int = 2
    atmosphere: AtmosphereOptions | None = field(default_factory=AtmosphereOptions)
    mask: MaskOptions = field(default_factory=MaskOptions)
    nbar: NbarOptions = field(default_factory=NbarOptions)
    coregistration: CoregistrationOptions = field(default_factory=CoregistrationOptions)
    bandpass_to: str | None = "L8_OLI"  # reference sensor of the spectral bandpass adjustment (HLS's)
    correction: Correction = Correction.physical
    learned_model: Path | None = None  # the learned correction's model; default: the one shipped for the sensor


@dataclass
class TileResult:
    tile: str
    item_path: Path
    skipped: bool
    files: list[Path] = field(default_factory=list)
    valid_fraction: float = 0.0


def select_tiles(scene: Scene, requested: tuple[str, ...]) -> list[Tile]:
    """The tiles to produce: those asked for (each must overlap the scene) or all the scene touches."""
    touched = {t.id: t for t in tiles_touching(scene.footprint)}
    if not requested:
        if not touched:
            raise GridError(f"{scene.product_path}: the scene footprint touches no Sentinel-2 tile")
        return list(touched.values())
    chosen = []
    for tile_id in requested:
        tile = get_tile(tile_id)
        if tile.id not in touched:
            raise GridError(f"{scene.product_path}: the scene does not touch tile {tile.id} "
                            f"(it touches {', '.join(touched) or 'none'})")
        chosen.append(tile)
    return chosen


def _finished(item_path: Path) -> bool:
    if not item_path.exists():
        return False
    try:
        assets = json.loads(item_path.read_text())["assets"].values()
    except (ValueError, KeyError):
        return False
    return all((item_path.parent / a["href"]).exists() for a in assets)


def covered_window(scene: Scene, geobox: GeoBox, margin: int = 2) -> tuple[slice, slice] | None:
    """Rows and columns of ``geobox`` the scene footprint covers (plus a margin for resampling kernels).

    Only this window is warped and calibrated; the rest of the tile is fill, so a scene that clips a
    tile corner costs in proportion to what it covers, not to the tile.
    """
    segment = 0.01 if scene.footprint.crs is not None and scene.footprint.crs.geographic else 1000.0
    footprint = scene.footprint.to_crs(crs_wkt(geobox), resolution=segment)
    left, bottom, right, top = footprint.boundingbox
    inverse = ~geobox.affine
    columns, rows = zip(*(inverse * corner for corner in ((left, top), (right, top), (left, bottom), (right, bottom))),
                        strict=True)
    height, width = geobox.shape.yx
    row0, row1 = max(math.floor(min(rows)) - margin, 0), min(math.ceil(max(rows)) + margin, height)
    col0, col1 = max(math.floor(min(columns)) - margin, 0), min(math.ceil(max(columns)) + margin, width)
    if row0 >= row1 or col0 >= col1:
        return None
    return slice(row0, row1), slice(col0, col1)


def terrain_of(options: ArdOptions) -> Terrain:
    """The heights that place RPC-located images: the DEM the atmosphere uses, if any."""
    return Terrain(options.atmosphere.dem if options.atmosphere is not None else None)


TileArrays = tuple[NDArray[np.float32], NDArray[np.float32] | None, NDArray[np.bool_], NDArray[np.float32]]


def toa_on_tile(scene: Scene, geobox: GeoBox, options: ArdOptions) -> TileArrays:
    """Reflective TOA stack, thermal brightness temperatures, the valid-data mask and the angles on ``geobox``.

    Bands are read, warped and calibrated ``options.threads`` at a time straight into the output stacks.
    """
    angles = scene.angles.on(geobox)
    reflective, thermal = scene.reflective_sources, scene.thermal_sources
    toa = np.empty((len(reflective), *geobox.shape.yx), dtype=np.float32)
    temperature = np.empty((len(thermal), *geobox.shape.yx), dtype=np.float32) if thermal else None

    terrain = terrain_of(options)

    def load(source: BandSource, destination: NDArray[np.float32]) -> None:
        dn = warp_band(source, geobox, options.resampling, options.threads, destination=destination, terrain=terrain)
        destination[...] = calibrate(dn, source.calibration, angles.sun_zenith, scene.earth_sun_distance)

    jobs = [(s, toa[i]) for i, s in enumerate(reflective)]
    if temperature is not None:
        jobs += [(s, temperature[i]) for i, s in enumerate(thermal)]
    with ThreadPoolExecutor(max_workers=max(options.threads, 1)) as pool:
        for future in [pool.submit(load, source, destination) for source, destination in jobs]:
            future.result()
    valid: NDArray[np.bool_] = np.asarray(np.isfinite(toa).all(axis=0))
    invalid = ~valid
    for band in toa:
        band[invalid] = np.nan
    if temperature is not None:
        for band in temperature:
            band[invalid] = np.nan
    return toa, temperature, valid, angles.values


def with_halo(geobox: GeoBox, pixels: int) -> GeoBox:
    """``geobox`` grown by ``pixels`` on every side, on the same grid."""
    return GeoBox((geobox.shape.y + 2 * pixels, geobox.shape.x + 2 * pixels),
                  geobox.affine * Affine.translation(-pixels, -pixels), geobox.crs)


def tile_part(arrays: TileArrays, inner: tuple[slice, slice]) -> TileArrays:
    """The ``toa_on_tile`` arrays of the tile itself, without the halo (views, not copies)."""
    toa, temperature, valid, angles = arrays
    return (toa[(slice(None), *inner)], None if temperature is None else temperature[(slice(None), *inner)],
            valid[inner], angles[(slice(None), *inner)])


def saturated_pixels(scene: Scene, toa: NDArray[np.float32], angles: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Pixels where a reflective band reads its detector's top DN (within half a count after resampling)."""
    found = np.zeros(toa.shape[1:], dtype=bool)
    for band, source in zip(toa, scene.reflective_sources, strict=True):
        if source.saturated is None:
            continue
        level = np.full(band.shape, np.float32(source.saturated - 0.5), dtype=np.float32)
        found |= band >= calibrate(level, source.calibration, angles[1], scene.earth_sun_distance)
    return found


def coregister_tile(scene: Scene, geobox: GeoBox, toa: NDArray[np.float32], options: ArdOptions) -> Registration:
    """The global offset of the scene's TOA on this tile against the reference, in tile pixels."""
    settings = options.coregistration
    assert settings.reference is not None
    names = [s.band.common_name for s in scene.reflective_sources]
    matches = [n for n in band_aliases(settings.band) if n in names]
    if not matches:
        raise MissingBandError(scene.product_path, f"co-registration needs a {settings.band} band; the scene has "
                               f"{', '.join(names)}")
    reference = load_reference_band(settings.reference, geobox, settings.band)
    image = toa[names.index(matches[0])]
    return register(reference, image, (options.resolution, options.resolution), Mode.global_, settings.max_rmse)


def registration_properties(registration: Registration, settings: CoregistrationOptions) -> dict[str, object]:
    assert settings.reference is not None
    return {"musyq:coregistration": {
        "reference": settings.reference.name, "band": settings.band, "offset_x_px": registration.offset_x_px,
        "offset_y_px": registration.offset_y_px, "offset_east_m": registration.offset_east_m,
        "offset_north_m": registration.offset_north_m, "rmse_px": registration.rmse_px,
        "tie_points": registration.tie_points, "applied": not registration.flagged,
        "flagged": registration.flagged, "max_rmse_px": settings.max_rmse}}


def normalize_to_nadir(
    surface: SurfaceResult, angles: NDArray[np.float32], valid: NDArray[np.bool_], processing: NDArray[np.uint8],
    scene: Scene, geobox: GeoBox, sun_zenith: float, options: NbarOptions,
) -> dict[str, object]:
    """NBAR of the surface reflectance in place; sets the processing flags and returns the STAC properties."""
    centre = geobox.extent.centroid.to_crs("EPSG:4326").coords[0]
    zenith = nbar_sun_zenith(centre[1], centre[0], scene.acquired, sun_zenith)
    kernels = KernelGrids.from_angles(angles, zenith)
    prior_path = options.brdf_prior
    prior = load_brdf_parameters(prior_path, geobox) if prior_path is not None else None
    from_prior = np.zeros(valid.shape, dtype=bool)
    for k, band in enumerate(surface.bands):
        _, used = normalize_band(surface.reflectance[k], band, kernels, prior, surface.uncertainty[k])
        from_prior |= used
    processing[valid] |= NBAR
    processing[valid & from_prior] |= NBAR_PRIOR
    share = float(from_prior[valid].mean()) if valid.any() else 0.0
    source = "Roy et al. (2016) fixed coefficients"
    if prior_path is not None:
        source = f"per-pixel parameters from {prior_path.name} on {100 * share:.0f}% of pixels, else " + source
    return {"musyq:nbar_solar_zenith": round(zenith, 3), "musyq:brdf_source": source}


def _lwir(thermal: list[Band], temperature: NDArray[np.float32] | None) -> NDArray[np.float32] | None:
    """The 11 um brightness temperature the cloud tests use (Landsat 8/9 B10, TM/ETM+ band 6 low gain)."""
    if temperature is None:
        return None
    for name in ("lwir11", "lwir"):
        for index, band in enumerate(thermal):
            if band.common_name == name:
                return np.asarray(temperature[index], dtype=np.float32)
    return None


def mask_inputs(
    scene: Scene, toa: NDArray[np.float32], temperature: NDArray[np.float32] | None, valid: NDArray[np.bool_],
    angles: NDArray[np.float32], pixel_size: float,
) -> MaskInputs:
    """What the cloud mask needs from a ``toa_on_tile`` result: bands by common name and the mean geometry."""
    step = 4 if valid[::4, ::4].any() else 1  # scene means need no more than every 4th pixel
    sun_azimuth, sun_zenith, view_azimuth, view_zenith = (
        mean_angle(a[::step, ::step][valid[::step, ::step]]) for a in angles)
    reflective = [s.band for s in scene.reflective_sources]
    return MaskInputs({b.common_name: toa[i] for i, b in enumerate(reflective)}, sun_zenith, sun_azimuth, pixel_size,
                      view_zenith, view_azimuth, _lwir([s.band for s in scene.thermal_sources], temperature), valid,
                      scene.product_path)


OVERVIEW_RESOLUTION = 240.0  # metres: enough pixels for the scene's statistics, cheap to read
WHOLE_SCENE = 0.9  # share of a scene's footprint a tile must hold to learn the thresholds from itself
# Read around each tile for its mask: clouds below about 3 km cast shadows into the tile from there (sun
# up to 45 degrees), and clouds cut by the tile's edge keep their shape
MASK_HALO_M = 3000.0
MASK_BANDS = ("blue", "green", "red", "nir", "nir08", "swir16", "swir22", "cirrus", "lwir11", "lwir")


def overview_toa(
    scene: Scene, resolution: float, terrain: Terrain | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None, NDArray[np.bool_], NDArray[np.float32], float]:
    """TOA, brightness temperature, valid data and angles of the whole scene at about ``resolution`` metres,
    on the first band's own grid, read decimated; and the pixel size."""
    native = scene.native_geobox(scene.bands[0].band.id)
    factor = max(int(round(resolution / abs(native.resolution.x))), 1)
    rows, cols = (-(-n // factor) for n in native.shape.yx)
    geobox = GeoBox((rows, cols), native.affine * Affine.scale(native.shape.x / cols, native.shape.y / rows),
                    native.crs)
    angles = scene.angles.on(geobox)

    def load(source: BandSource) -> NDArray[np.float32]:
        dn = read_overview(source, geobox, terrain)
        return np.asarray(calibrate(dn, source.calibration, angles.sun_zenith, scene.earth_sun_distance),
                          dtype=np.float32)

    toa = np.stack([load(s) for s in scene.reflective_sources])
    temperature = np.stack([load(s) for s in scene.thermal_sources]) if scene.thermal_sources else None
    valid = np.asarray(np.isfinite(toa).all(axis=0))
    return toa, temperature, valid, angles.values, float(abs(geobox.resolution.x))


def scene_thresholds(scene: Scene, options: ArdOptions) -> SceneThresholds:
    """Cloud-test thresholds learnt once from an overview of the whole scene, for all its tiles alike."""
    needed = replace(scene, bands=tuple(s for s in scene.bands if s.band.common_name in MASK_BANDS))
    # the thresholds are statistics of the whole scene, which relief displacement does not change: an RPC image
    # is placed at the model's mean height, sparing a read of the whole DEM per band
    toa, temperature, valid, angles, pixel_size = overview_toa(needed, max(options.resolution, OVERVIEW_RESOLUTION),
                                                               Terrain())
    return learn_thresholds(mask_inputs(needed, toa, temperature, valid, angles, pixel_size), options.mask.method)


@lru_cache(maxsize=8)
def _emulator(path: Path) -> Emulator:
    return load_emulator(path)


def scene_emulator(scene: Scene, model: Path | None) -> Emulator:
    """The learned correction's model for a scene: the given one, or the one shipped for its sensor."""
    path = model or shipped_model(scene.sensor.id, tuple(s.band.id for s in scene.reflective_sources))
    emulator = _emulator(path)
    if emulator.sensor_id != scene.sensor.id:
        raise InputError(path, f"the learned model is for {emulator.sensor_id}, the scene is {scene.sensor.id}")
    return emulator


def process_tile(
    scene: Scene, tile: Tile, out_dir: Path, options: ArdOptions,
    thresholds: Callable[[], SceneThresholds] | None = None,
) -> TileResult:
    name = ProductName(scene.sensor.code, options.resolution, scene.acquired, tile.id, options.version)
    folder = out_dir.resolve() / tile.id / name.item_id
    item_path = folder / f"{name.item_id}.json"
    if not options.overwrite and _finished(item_path):
        return TileResult(tile.id, item_path, skipped=True)
    geobox = tile.geobox(options.resolution)
    window = covered_window(scene, geobox)
    if window is None:
        return TileResult(tile.id, item_path, skipped=True)
    # the scene is read with a halo around the tile where it has data there: its clouds cast shadows
    # into the tile, and clouds cut by the tile's edge keep their shape
    halo = math.ceil(MASK_HALO_M / options.resolution)
    padded = with_halo(geobox, halo)
    around = covered_window(scene, padded)
    assert around is not None  # it holds the tile's covered window
    inner = (slice(window[0].start + halo - around[0].start, window[0].stop + halo - around[0].start),
             slice(window[1].start + halo - around[1].start, window[1].stop + halo - around[1].start))
    surroundings = toa_on_tile(scene, padded[around], options)
    toa, temperature, valid, angles = tile_part(surroundings, inner)
    if not valid.any():
        return TileResult(tile.id, item_path, skipped=True)
    registration = None
    if options.coregistration.reference is not None:
        registration = coregister_tile(scene, geobox[window], toa, options)
        if not registration.flagged:
            # warping onto a grid moved by the offset puts each pixel's content where it belongs
            shift = Affine.translation(registration.offset_x_px, registration.offset_y_px)
            moved = GeoBox(padded[around].shape, padded[around].affine * shift, padded.crs)
            surroundings = toa_on_tile(scene, moved, options)
            toa, temperature, valid, angles = tile_part(surroundings, inner)
    valid_fraction = float(valid.sum() / geobox.shape.yx[0] / geobox.shape.yx[1])

    reflective = [s.band for s in scene.reflective_sources]
    thermal = [s.band for s in scene.thermal_sources]
    inputs = mask_inputs(scene, toa, temperature, valid, angles, options.resolution)
    sun_zenith = inputs.sun_zenith
    # a tile holding (nearly) the whole scene, as a Sentinel-2 granule does, learns the same thresholds
    # from itself as from an overview; only tiles holding part of a scene need the overview
    covered = float(valid.sum()) * options.resolution**2 / scene.footprint.to_crs(scene.crs).area
    learnt = thresholds() if thresholds is not None and covered < WHOLE_SCENE else None
    mask = compute_mask(mask_inputs(scene, *surroundings, options.resolution), options.mask.method,
                        options.mask.cloud_buffer_m, options.mask.shadow_buffer_m, learnt).cropped(inner)
    quality = mask.quality
    processing = np.where(valid, DATA, 0).astype(np.uint8)
    if registration is not None and not registration.flagged:
        processing[valid] |= COREGISTERED
    processing[saturated_pixels(scene, toa, angles) & valid] |= SATURATED
    tags = {"product_id": scene.product_id, "sensor": scene.sensor.id, "tile": tile.id,
            "datetime": scene.acquired.isoformat() + "Z"}
    layers: list[tuple[Layer, AssetSpec]] = []

    def add(layer: Layer, title: str, roles: tuple[str, ...], bands: tuple[Band, ...] | None, unit: str | None) -> None:
        layers.append((layer, AssetSpec(layer.name, folder / name.layer(layer.name), title, roles, bands,
                                        layer.descriptions, layer.nodata, layer.scale, layer.data.dtype.name,
                                        unit)))

    add(Layer("TOA", encode_reflectance(toa), 0, tuple(b.common_name for b in reflective), 1 / REFLECTANCE_SCALE),
        "Top-of-atmosphere reflectance", ("data", "reflectance"), tuple(reflective), None)
    if temperature is not None:
        add(Layer("BT", encode_temperature(temperature), 0, tuple(b.common_name for b in thermal),
                  1 / TEMPERATURE_SCALE), "Brightness temperature", ("data", "temperature"), tuple(thermal), "kelvin")
    properties: dict[str, object] = {
        "musyq:source_product": scene.product_id, "musyq:reader": scene.reader,
        "musyq:angles": scene.angles.describe(), "musyq:mask_method": MaskMethod(options.mask.method).value,
        "eo:cloud_cover": round(100 * mask.fraction(CLOUD), 2),
        "musyq:cloud_shadow_percent": round(100 * mask.fraction(CLOUD_SHADOW), 2),
        "musyq:snow_percent": round(100 * mask.fraction(SNOW), 2),
        "musyq:water_percent": round(100 * mask.fraction(WATER), 2),
        "musyq:mask_notes": mask.notes,
    }
    if registration is not None:
        properties.update(registration_properties(registration, options.coregistration))
    atmosphere = options.atmosphere
    if atmosphere is not None:
        elevation = load_elevation(atmosphere.dem, geobox[window]) if atmosphere.dem is not None else None
        if options.correction == Correction.learned:
            emulator = scene_emulator(scene, options.learned_model)
            surface = correct_tile_learned(emulator, tuple(reflective), toa, angles, valid, atmosphere, elevation,
                                           clear=quality == CLEAR)
        else:
            prior = load_prior(atmosphere.aot_prior, geobox[window]) if atmosphere.aot_prior is not None else None
            surface = correct_tile(load_table(scene.sensor.id), tuple(reflective), toa, angles, valid,
                                   options.resolution, atmosphere, prior, elevation, clear=quality == CLEAR)
        processing[valid] |= SURFACE_REFLECTANCE
        if surface.aot_assumed:
            processing[valid] |= AOD_CLIMATOLOGY
        if options.nbar.enabled:
            properties.update(normalize_to_nadir(surface, angles, valid, processing, scene, geobox[window],
                                                 sun_zenith, options.nbar))
        if options.bandpass_to is not None:
            adjusted = adjust(surface.reflectance, surface.bands, coefficients(scene.sensor.id, options.bandpass_to),
                              water=quality == WATER, uncertainty=surface.uncertainty)
            if adjusted:
                processing[valid] |= BANDPASS
                properties.update({"musyq:bandpass_to": options.bandpass_to, "musyq:bandpass_bands": adjusted})
        add(Layer("SR", encode_reflectance(surface.reflectance), 0, tuple(b.common_name for b in surface.bands),
                  1 / REFLECTANCE_SCALE), "Surface reflectance", ("data", "reflectance"), surface.bands, None)
        learned = options.correction == Correction.learned
        terms = "the learned correction's ensemble spread, calibration" if learned else \
            "calibration, aerosol, table interpolation"
        add(Layer("SRUNC", encode_reflectance(surface.uncertainty), 0, tuple(b.common_name for b in surface.bands),
                  1 / REFLECTANCE_SCALE), f"Surface reflectance uncertainty (one sigma): {terms}, NBAR and "
            "bandpass terms", ("data", "uncertainty"), surface.bands, None)
        properties.update({"musyq:correction": Correction(options.correction).value, "musyq:ozone": atmosphere.ozone})
        if learned:
            model = scene_emulator(scene, options.learned_model)
            properties.update({"musyq:learned_model": {"sensor": model.sensor_id, "bands": list(model.bands),
                                                       **model.record},
                               "musyq:learned_context": surface.notes["context"]})
        else:
            add(Layer("AOD", encode_reflectance(surface.aot550), 0, ("aot550",), 1 / REFLECTANCE_SCALE),
                "Aerosol optical depth at 550 nm", ("data", "aerosol"), None, None)
            properties.update({
                "musyq:aerosol_model": atmosphere.aerosol_model,
                "musyq:aot550": round(float(np.nanmean(surface.aot550)), 4),
                "musyq:water_vapour": round(surface.water_vapour, 3),
                "musyq:aot550_source": surface.notes["aot550"],
                "musyq:water_vapour_source": surface.notes["water_vapour"],
            })
    add(Layer("ANG", encode_angles(angles, valid), ANGLE_NODATA,
              ("solar_azimuth", "solar_zenith", "view_azimuth", "view_zenith"), 1 / ANGLE_SCALE),
        "Sun and view angles", ("metadata", "angles"), None, "degree")
    add(Layer("MASK", np.stack([quality, processing]), FILL, ("quality", "processing"), resampling="mode"),
        "Pixel quality (0 fill, 1 clear, 2 water, 3 cloud shadow, 4 snow, 5 cloud) and processing flags (1 data, "
        "2 surface reflectance, 4 NBAR, 8 NBAR from per-pixel BRDF parameters, 16 co-registered, "
        "32 bandpass-adjusted, 64 aerosol from climatology, 128 saturated in a band)", ("data-mask", "quality"),
        None, None)
    add(Layer("CLOUDPROB", np.where(valid, mask.cloud_probability, PROBABILITY_NODATA).astype(np.uint8),
              PROBABILITY_NODATA, ("cloud_probability",)),
        "Cloud probability (percent; 50 is the cloud threshold)", ("data", "cloud-probability"), None, "percent")

    files = [write_cog(spec.href, layer, geobox, tags, window) for layer, spec in layers]
    item = build_item(
        name.item_id, scene.sensor, scene.acquired, tile.id, geobox, [spec for _, spec in layers],
        inputs.sun_azimuth, sun_zenith, inputs.view_zenith, inputs.view_azimuth,
        fill_percent=100 * (1 - valid_fraction),
        properties=properties,
    )
    save_item(item, item_path)
    return TileResult(tile.id, item_path, skipped=False, files=files, valid_fraction=valid_fraction)


def run_ard(scene: Scene, out_dir: Path, options: ArdOptions, progress: Progress | None = None) -> list[TileResult]:
    """Produce every requested tile of one scene; finished tiles are skipped unless ``overwrite``."""
    if options.atmosphere is not None and not has_table(scene.sensor.id):
        warnings.warn(f"{scene.sensor.id} has no atmospheric lookup table (build one with musyq lut build): "
                      "TOA only", stacklevel=2)
        options = replace(options, atmosphere=None)
    thresholds = cache(lambda: scene_thresholds(scene, options))  # learnt on the first tile that needs it
    results = []
    for tile in select_tiles(scene, options.tiles):
        if progress:
            progress(tile.id)
        results.append(process_tile(scene, tile, out_dir, options, thresholds))
    return results
