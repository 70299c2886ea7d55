"""A simulated Gaofen WFV Level-1A product made from a real surface reflectance, to check the chain end to end.

No openly redistributable Gaofen Level-1A sample exists, so this builds one the way the sensor would
see a real surface, and labels it as simulated in its XML (``<ProduceType>SIMULATED``):

1. the surface reflectance of another sensor (Sentinel-2, Landsat) becomes WFV bands through the
   shipped bandpass fits, averaged onto the 16 m MGRS grid: the truth the chain must return;
2. a pushbroom camera flies a sun-synchronous orbit 645 km up and looks obliquely at the scene (an
   outer camera: 30-35 degrees off nadir); every image pixel's line of sight meets the terrain (a real
   DEM where given), which places it on the ground;
3. the truth seen there goes up through the 6S tables (per-pixel sun and view angles) to TOA
   reflectance, to radiance, and to DN with the published gains of the camera and year;
4. an RPC model is fitted to the camera, as vendors do, and may carry a geolocation bias;
5. everything is written in the exact CRESDA layout (TIFF, XML, RPB; packed as ``.tar.gz``).
"""

from __future__ import annotations

import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from numba import njit, prange
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC
from rasterio.warp import reproject, transform_bounds
from scipy import ndimage

from musyq.ard.atmcor import Atmosphere, Coefficients, coefficients, toa_reflectance, upsample
from musyq.ard.bandpass import coefficients as band_fits, synthesis
from musyq.ard.brdf import brdf, nbar_sun_zenith, roy_coefficients
from musyq.ard.lut import load_table
from musyq.core import rpc as rpc_model
from musyq.core.angles import ground_frame
from musyq.core.errors import InputError, MusyqError
from musyq.core.grid import crs_wkt, get_tile
from musyq.core.sensors import Band, get_sensor, solar_irradiance
from musyq.core.tiling import node_grid
from musyq.core.solar import earth_sun_distance, solar_angles
from musyq.io.readers.gaofen import (
    BEIJING,
    archive_folder,
    coefficients_for,
    format_metadata,
    format_rpb,
    read_calibration_table,
)

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]
ORBIT_ALTITUDE_M = 645_000.0
INCLINATION_DEG = 98.0
NODE_STEP = 16  # image pixels between the nodes where the camera is solved exactly
BLOCK_LINES = 64 * NODE_STEP  # image lines simulated at once: bounded memory for a full-size scene
RPC_GRID = 21  # image points per side, at RPC_HEIGHTS heights, for the model fit
RPC_HEIGHTS = 7
# GF-1 WFV's DN are 10 bit; GF-6's CMOS gains (0.03-0.08 radiance units per DN) need 12
DN_BITS = {"gaofen-1": 10, "gaofen-6": 12}


@dataclass(frozen=True)
class Camera:
    """The simulated acquisition: which camera, when, how obliquely, and what the image holds."""

    sensor: str = "GF1_WFV1"
    acquired: datetime | None = None  # UTC; default: 11 April 2021 at 10:30 local solar time of the scene
    view_zenith: float = 32.0  # at the scene centre, degrees
    look_right: bool = True  # the scene lies to the right of the ground track
    descending: bool = True
    line_spacing_m: float = 16.0
    sample_spacing_m: float = 16.0  # across track at the scene centre
    shape: tuple[int, int] | None = None  # image lines, samples; default: what fits in the truth
    strips: int = 1  # GF-6 WFV images come as column strips
    aot550: float = 0.15
    water_vapour: float = 1.2
    ozone: float = 0.3
    aerosol_model: str = "continental"
    gain_error: float = 0.0  # relative DN error to put in (a calibration drift)
    rpc_bias_px: tuple[float, float] = (0.0, 0.0)  # lines, samples the written RPC model is off by
    clock: str = "beijing"  # how CenterTime is written: "beijing" or "utc"
    anisotropic: bool = True  # the surface has Roy et al.'s BRDF shape, the truth being its NBAR
    product_id: str = "0000123456"


@dataclass
class Simulation:
    """What was made and the truth to compare the chain's output with."""

    product: Path
    truth: Path  # surface reflectance of the WFV bands on the 16 m MGRS grid
    dem: Path | None
    tile: str
    rpc_residual_px: float
    view_zenith_range: tuple[float, float]


# --- the truth ---------------------------------------------------------------------------------------------

def truth_reflectance(paths: dict[str, Path], source_sensor: str, target_sensor: str, tile_id: str,
                      resolution: float = 16.0) -> tuple[F32, GeoBox, tuple[str, ...]]:
    """The source surface reflectance as the target's bands on the tile's pixel lattice (area average), over
    the source extent. ``paths`` maps common band names to single-band rasters of reflectance (values above
    2 are read as reflectance x 10000)."""
    target = get_sensor(target_sensor)
    source = get_sensor(source_sensor)

    broad_nir = any(b.common_name == "nir" for b in target.reflective_bands)

    def given_as(band: Band) -> str:
        """The source's name for a target band: its own, else nir for the narrow near-infrared band of a sensor
        with no other (OLI B5)."""
        narrow_only = band.common_name == "nir08" and "nir08" not in paths and not broad_nir
        return "nir" if narrow_only else band.common_name

    # the line from the source band given under that name (Sentinel-2 B08, not B8A, for nir)
    fits = {(f.surface, f.target_band): f for f in band_fits(source.id, target.id)
            if source.band(f.source_band).common_name == given_as(target.band(f.target_band))}
    grid = get_tile(tile_id).geobox(resolution)
    first = next(iter(paths.values()))
    with rasterio.open(first) as dataset:
        left, bottom, right, top = transform_bounds(dataset.crs, crs_wkt(grid), *dataset.bounds)
    inverse = ~grid.affine
    col0, row0 = (math.ceil(v) for v in inverse * (left, top))
    col1, row1 = (math.floor(v) for v in inverse * (right, bottom))
    if col1 - col0 < 64 or row1 - row0 < 64:
        raise InputError(first, f"covers fewer than 64 x 64 pixels of tile {tile_id} at {resolution:g} m")
    # the tile's pixel lattice over the whole source, which may reach past the tile (a full WFV scene spans
    # several tiles)
    window = GeoBox((row1 - row0, col1 - col0), grid.affine * Affine.translation(col0, row0), grid.crs)
    wanted = target.reflective_bands if target.family == "gaofen" else \
        tuple(b for b in target.reflective_bands if given_as(b) in paths)
    # a Gaofen band the source lacks (GF-6's red edges, purple, yellow) is mixed from the source's blue, green,
    # red and nir, by the mix fitted over the spectral library
    mixes = {m.target_band: m for m in synthesis(source.id, target.id, from_vnir=True)}
    sources: dict[str, F32] = {}

    def nir_as_given(name: str) -> str:  # the mixes of OLI and MODIS take their narrow nir08 as the source's nir
        return "nir" if name == "nir08" and "nir08" not in paths else name

    def source_band(name: str) -> F32:
        if name not in sources:
            values = np.full(window.shape.yx, np.nan, dtype=np.float32)
            with rasterio.open(paths[name]) as dataset:
                reproject(rasterio.band(dataset, 1), values, dst_transform=window.affine, dst_crs=crs_wkt(window),
                          src_nodata=dataset.nodata, dst_nodata=np.nan, resampling=Resampling.average)
            if np.nanmax(values) > 2:
                values /= np.float32(10_000)
            sources[name] = values
        return sources[name]

    bands = np.full((len(wanted), *window.shape.yx), np.nan, dtype=np.float32)
    for values, band in zip(bands, wanted, strict=True):
        mix = mixes.get(band.id)
        if given_as(band) in paths:
            values[:] = source_band(given_as(band))
            fit = fits.get(("land", band.id))
            if fit is not None:
                values *= np.float32(fit.slope)
                values += np.float32(fit.offset)
        elif mix is not None and all(nir_as_given(name) in paths for name in mix.weights):
            values[:] = mix.offset
            for name, weight in mix.weights.items():
                values += np.float32(weight) * source_band(nir_as_given(name))
        else:
            raise InputError(first, f"the source has no {band.common_name} band for {target.id} {band.id}")
    return bands, window, tuple(band.common_name for band in wanted)


def elevation_on(dem: Path | None, geobox: GeoBox) -> F32:
    if dem is None:
        return np.zeros(geobox.shape.yx, dtype=np.float32)
    with rasterio.open(dem) as dataset:
        values = np.full(geobox.shape.yx, np.nan, dtype=np.float32)
        reproject(rasterio.band(dataset, 1), values, dst_transform=geobox.affine, dst_crs=crs_wkt(geobox),
                  src_nodata=dataset.nodata, dst_nodata=np.nan, resampling=Resampling.bilinear)
    if not np.isfinite(values).all():
        raise InputError(dem, "does not cover the whole scene")
    return values


# --- the camera --------------------------------------------------------------------------------------------

ECEF_TO_GEODETIC = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
GEODETIC_TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
WGS84_A, WGS84_B = 6_378_137.0, 6_356_752.314245


@dataclass(frozen=True)
class Pushbroom:
    """A line camera: satellite positions along a circular orbit, one look angle per detector."""

    position: F64  # (3,) ECEF of the satellite at the centre line
    along: F64  # (3,) unit velocity at the centre line
    across: F64  # (3,) unit orbit normal, towards the scene side
    line_angle: float  # orbit angle per image line, radians
    centre_look: float  # off-nadir angle of the centre detector, radians
    ifov: float  # radians per detector
    centre: tuple[float, float]  # centre line, centre sample

    def rays(self, lines: F64, samples: F64) -> tuple[F64, F64]:
        """Satellite positions and unit lines of sight of image points (lines, samples broadcast)."""
        phi = (lines - self.centre[0]) * self.line_angle
        radius = np.linalg.norm(self.position)
        satellite = (np.cos(phi)[..., None] * self.position + np.sin(phi)[..., None] * radius * self.along)
        nadir = -satellite / np.linalg.norm(satellite, axis=-1, keepdims=True)
        look = self.centre_look + (samples - self.centre[1]) * self.ifov
        sight = np.cos(look)[..., None] * nadir + np.sin(look)[..., None] * self.across
        return satellite, sight


def ellipsoid_hit(satellite: F64, sight: F64, height: F64 | float) -> F64:
    """Where lines of sight meet the ellipsoid raised by ``height`` metres (ECEF)."""
    a, b = WGS84_A + np.asarray(height, dtype=np.float64), WGS84_B + np.asarray(height, dtype=np.float64)
    scale = np.stack(np.broadcast_arrays(1 / a, 1 / a, 1 / b), axis=-1)
    p, d = satellite * scale, sight * scale
    qa = np.sum(d * d, axis=-1)
    qb = 2 * np.sum(p * d, axis=-1)
    qc = np.sum(p * p, axis=-1) - 1
    discriminant = qb * qb - 4 * qa * qc
    if np.any(discriminant < 0):
        raise MusyqError("a simulated line of sight misses the Earth")
    t = (-qb - np.sqrt(discriminant)) / (2 * qa)
    return np.asarray(satellite + t[..., None] * sight)


def build_camera(centre_lon: float, centre_lat: float, centre_height: float, camera: Camera,
                 shape: tuple[int, int]) -> Pushbroom:
    """Place the orbit so that the image centre sees the scene centre at ``camera.view_zenith``."""
    x, y, z = GEODETIC_TO_ECEF.transform(centre_lon, centre_lat, centre_height)
    ground = np.array([x, y, z])
    phi = math.radians(centre_lat)
    _, east, north, up = ground_frame(np.array(centre_lon), np.array(centre_lat))
    ratio = max(min(math.cos(math.radians(INCLINATION_DEG)) / math.cos(phi), 1.0), -1.0)
    heading = math.asin(ratio)  # ascending track azimuth
    if camera.descending:
        heading = math.pi - heading
    along_ground = math.sin(heading) * east + math.cos(heading) * north
    right = np.cross(along_ground, up)  # the right of the track, horizontally
    side = right if camera.look_right else -right
    zenith = math.radians(camera.view_zenith)
    towards_satellite = math.cos(zenith) * up - math.sin(zenith) * side
    radius = float(np.linalg.norm(ground))
    projection = float(ground @ towards_satellite)
    slant = -projection + math.sqrt(projection**2 + (radius + ORBIT_ALTITUDE_M) ** 2 - radius**2)
    satellite = ground + slant * towards_satellite
    nadir = -satellite / np.linalg.norm(satellite)
    sight = (ground - satellite) / slant
    across = sight - (sight @ nadir) * nadir
    across /= np.linalg.norm(across)
    along = np.cross(across, nadir)
    if along @ along_ground < 0:
        along = -along
    centre_look = math.acos(float(np.clip(sight @ nadir, -1, 1)))
    # a detector's footprint across track grows as 1 / cos(view zenith) along the slant range
    ifov = camera.sample_spacing_m * math.cos(zenith) / slant
    line_angle = camera.line_spacing_m / radius
    return Pushbroom(satellite, along, across, line_angle, centre_look, ifov,
                     ((shape[0] - 1) / 2, (shape[1] - 1) / 2))


# --- placing pixels on the terrain -------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def _on_terrain(low: NDArray[np.float64], high: NDArray[np.float64], step: int, height_low: float,
                height_high: float, dem: NDArray[np.float32], dem_origin: NDArray[np.float64], dem_pixel: float,
                out: NDArray[np.float64]) -> None:  # pragma: no cover - compiled
    """Map x, y of every image pixel where its line of sight meets the terrain.

    ``low``/``high``: map x, y of the node pixels' sights at two heights; a sight is straight over the
    few hundred metres between them, so a pixel's ground point at height h is the blend of the two, and
    the terrain point is found by iterating h = DEM(ground point).
    """
    rows, cols = out.shape[1], out.shape[2]
    span = height_high - height_low
    for i in prange(rows):
        r = i / step
        r0 = min(int(r), low.shape[1] - 2)
        fr = r - r0
        for j in range(cols):
            c = j / step
            c0 = min(int(c), low.shape[2] - 2)
            fc = c - c0
            w00, w01, w10, w11 = (1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc
            xl = w00 * low[0, r0, c0] + w01 * low[0, r0, c0 + 1] + w10 * low[0, r0 + 1, c0] + w11 * low[0, r0 + 1, c0 + 1]
            yl = w00 * low[1, r0, c0] + w01 * low[1, r0, c0 + 1] + w10 * low[1, r0 + 1, c0] + w11 * low[1, r0 + 1, c0 + 1]
            xh = w00 * high[0, r0, c0] + w01 * high[0, r0, c0 + 1] + w10 * high[0, r0 + 1, c0] + w11 * high[0, r0 + 1, c0 + 1]
            yh = w00 * high[1, r0, c0] + w01 * high[1, r0, c0 + 1] + w10 * high[1, r0 + 1, c0] + w11 * high[1, r0 + 1, c0 + 1]
            h = height_low
            x, y = xl, yl
            for _ in range(12):
                x = xl + (h - height_low) / span * (xh - xl)
                y = yl + (h - height_low) / span * (yh - yl)
                dc = (x - dem_origin[0]) / dem_pixel - 0.5
                dr = (dem_origin[1] - y) / dem_pixel - 0.5
                dc = min(max(dc, 0.0), dem.shape[1] - 1.001)
                dr = min(max(dr, 0.0), dem.shape[0] - 1.001)
                a, b = int(dr), int(dc)
                ur, uc = dr - a, dc - b
                h = ((1 - ur) * (1 - uc) * dem[a, b] + (1 - ur) * uc * dem[a, b + 1] + ur * (1 - uc) * dem[a + 1, b]
                     + ur * uc * dem[a + 1, b + 1])
            out[0, i, j] = x
            out[1, i, j] = y
            out[2, i, j] = h


def ground_points(camera: Pushbroom, shape: tuple[int, int], heights: tuple[float, float], crs: str,
                  dem: F32, dem_grid: GeoBox) -> F64:
    """Map x, y and terrain height of every image pixel (3, lines, samples)."""
    rows, cols = node_grid(shape[0], NODE_STEP), node_grid(shape[1], NODE_STEP)
    lines, samples = np.meshgrid(rows, cols, indexing="ij")
    satellite, sight = camera.rays(lines, samples)
    to_map = Transformer.from_crs("EPSG:4979", crs, always_xy=True)
    nodes = []
    for height in heights:
        hit = ellipsoid_hit(satellite, sight, height)
        lon, lat, _ = ECEF_TO_GEODETIC.transform(hit[..., 0], hit[..., 1], hit[..., 2])
        x, y = to_map.transform(lon, lat)
        nodes.append(np.stack([x, y]))
    out = np.empty((3, *shape), dtype=np.float64)
    origin = np.array([dem_grid.affine.c, dem_grid.affine.f])
    _on_terrain(nodes[0], nodes[1], NODE_STEP, heights[0], heights[1], dem, origin, float(dem_grid.affine.a), out)
    return out


def fit_camera_rpc(camera: Pushbroom, shape: tuple[int, int], heights: tuple[float, float],
                   column: int = 0, width: int | None = None) -> tuple[RPC, float]:
    """The RPC model of (a column strip of) the image, and its worst residual in pixels on a denser check grid."""
    width = shape[1] - column if width is None else width

    def correspondences(count: int, levels: int) -> tuple[F64, ...]:
        lines, samples = np.meshgrid(np.linspace(0, shape[0] - 1, count), np.linspace(column, column + width - 1, count),
                                     indexing="ij")
        satellite, sight = camera.rays(lines, samples)
        out: list[list[F64]] = [[], [], [], [], []]
        for height in np.linspace(heights[0], heights[1], levels):
            hit = ellipsoid_hit(satellite, sight, height)
            lon, lat, h = ECEF_TO_GEODETIC.transform(hit[..., 0], hit[..., 1], hit[..., 2])
            for store, values in zip(out, (lon, lat, h, lines, samples - column), strict=True):
                store.append(np.ravel(values))
        return tuple(np.concatenate(v) for v in out)

    lon, lat, h, line, sample = correspondences(RPC_GRID, RPC_HEIGHTS)
    model = rpc_model.fit(lon, lat, h, line, sample)
    lon, lat, h, line, sample = correspondences(2 * RPC_GRID - 1, RPC_HEIGHTS + 2)
    fitted_line, fitted_sample = rpc_model.project(model, lon, lat, h)
    residual = float(np.max(np.hypot(fitted_line - line, fitted_sample - sample)))
    return model, residual


# --- radiometry --------------------------------------------------------------------------------------------

def view_geometry(camera: Pushbroom, shape: tuple[int, int], acquired: datetime,
                  ground: F64, crs: str) -> tuple[F64, F64, F64, F64, tuple[F64, F64], F64]:
    """Sun zenith, sun azimuth, view zenith and view azimuth on the node grid, the node positions and the
    terrain height there."""
    rows, cols = node_grid(shape[0], NODE_STEP), node_grid(shape[1], NODE_STEP)
    lines, samples = np.meshgrid(rows, cols, indexing="ij")
    satellite, _ = camera.rays(lines, samples)
    r = np.clip(lines.astype(int), 0, shape[0] - 1)
    c = np.clip(samples.astype(int), 0, shape[1] - 1)
    x, y, height = ground[0][r, c], ground[1][r, c], ground[2][r, c]
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    lon, lat = np.asarray(lon), np.asarray(lat)
    gx, gy, gz = GEODETIC_TO_ECEF.transform(lon, lat, height)
    towards = satellite - np.stack([gx, gy, gz], axis=-1)
    _, east, north, up = ground_frame(lon, lat)
    e, n, u = (np.sum(towards * v, axis=-1) for v in (east, north, up))
    view_zenith = np.degrees(np.arctan2(np.hypot(e, n), u))
    view_azimuth = np.degrees(np.arctan2(e, n)) % 360
    sun_zenith, sun_azimuth = solar_angles(acquired, lat, lon)
    return np.asarray(sun_zenith), np.asarray(sun_azimuth), view_zenith, view_azimuth, (rows, cols), height


def upsample_nodes(values: F64, nodes: tuple[F64, F64], shape: tuple[int, int]) -> F64:
    """Bilinear interpolation of node values to every pixel (the correction's own node interpolation)."""
    return upsample(values, nodes[0].astype(np.intp), nodes[1].astype(np.intp), shape).astype(np.float64)


def simulate(truth_paths: dict[str, Path], source_sensor: str, tile_id: str, out_dir: Path, camera: Camera,
             dem: Path | None = None, calibration: Path | None = None, archive: bool = True) -> Simulation:
    """Make a simulated WFV Level-1A product of a real surface and write it with its truth."""
    sensor = get_sensor(camera.sensor)
    if sensor.family != "gaofen":
        raise MusyqError(f"{sensor.id} is not a Gaofen WFV camera")
    truth, grid, names = truth_reflectance(truth_paths, source_sensor, sensor.id, tile_id)
    elevation = elevation_on(dem, grid)
    crs = crs_wkt(grid)
    (centre_lon, centre_lat), acquired = centre_and_time(grid, camera)
    centre_height = float(np.median(elevation))
    heights = (float(elevation.min()) - 50.0, float(elevation.max()) + 50.0)
    shape = camera.shape or default_shape(grid, camera)
    pushbroom = build_camera(centre_lon, centre_lat, centre_height, camera, shape)
    ground = ground_points(pushbroom, shape, heights, crs, elevation, grid)
    del elevation
    sun_zenith, sun_azimuth, view_zenith, view_azimuth, nodes, node_height = view_geometry(pushbroom, shape, acquired,
                                                                             ground, crs)
    # where each image pixel's ground point lies in the truth (pixel centres), fill outside
    cols = (ground[0] - grid.affine.c) / grid.affine.a - 0.5
    rows = (ground[1] - grid.affine.f) / grid.affine.e - 0.5
    del ground
    inside = (cols >= 0) & (cols <= grid.shape.x - 1) & (rows >= 0) & (rows <= grid.shape.y - 1)
    if inside.mean() < 0.5:
        raise MusyqError("the simulated image falls mostly outside the truth; give a smaller --shape")
    shapes = [anisotropy_factor(band, (sun_zenith, sun_azimuth, view_zenith, view_azimuth), (centre_lon, centre_lat),
                                acquired) if camera.anisotropic else None for band in sensor.reflective_bands]
    table = load_table(sensor.id)
    atmosphere = Atmosphere(camera.aot550, camera.water_vapour, camera.ozone, camera.aerosol_model,
                            np.clip(node_height, 0, None) / 1000.0)
    irradiance = solar_irradiance(sensor.id)
    distance = float(earth_sun_distance(acquired.timetuple().tm_yday))
    pairs, _source = coefficients_for(sensor.id, acquired.year, len(sensor.reflective_bands),
                                      read_calibration_table(calibration), calibration or "the shipped table")
    dn = np.zeros((len(names), *shape), dtype=np.uint16)
    bits = DN_BITS[sensor.platform]
    for k, band in enumerate(sensor.reflective_bands):
        coef = coefficients(table, band.id, atmosphere, sun_zenith, view_zenith, sun_azimuth - view_azimuth)
        # the cubic spline's coefficients once per band, sampled block by block (bounded memory at full size)
        spline = ndimage.spline_filter(np.nan_to_num(truth[k], nan=0.0), order=3, mode="nearest")
        for start in range(0, shape[0], BLOCK_LINES):
            lines = slice(start, min(start + BLOCK_LINES, shape[0]))
            on_block = block_nodes(nodes, lines, shape[1])
            surface = ndimage.map_coordinates(spline, [rows[lines], cols[lines]], order=3, mode="nearest",
                                              prefilter=False)
            factor = shapes[k]
            if factor is not None:
                surface *= on_block(factor)
            toa = toa_reflectance(surface, Coefficients(*(on_block(np.asarray(v, dtype=np.float64))
                                                          for v in (coef.gain, coef.offset, coef.albedo))))
            cos_sun = np.cos(np.radians(on_block(sun_zenith)))
            radiance = toa * irradiance[band.id] * cos_sun / (math.pi * distance**2)
            counts = (radiance - pairs[k][1]) / pairs[k][0] * (1.0 + camera.gain_error)
            dn[k, lines] = np.where(inside[lines], np.clip(np.round(counts), 1, 2**bits - 1), 0)
        del spline

    truth = unobservable(truth, dn == 2**bits - 1, rows, cols)
    del rows, cols, inside
    base = product_name(sensor.id, centre_lon, centre_lat, camera, acquired)
    folder = out_dir / base
    temporary = out_dir / f".{base}.partial"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    strip_edges = np.linspace(0, shape[1], camera.strips + 1).round().astype(int)
    worst = 0.0
    for index in range(camera.strips):
        column, width = int(strip_edges[index]), int(strip_edges[index + 1] - strip_edges[index])
        model, residual = fit_camera_rpc(pushbroom, shape, heights, column, width)
        worst = max(worst, residual)
        model = rpc_model.shifted(model, *camera.rpc_bias_px)
        stem = base if camera.strips == 1 else f"{base}-{index + 1}"
        write_image(temporary / f"{stem}.tiff", dn[:, :, column:column + width])
        (temporary / f"{stem}.rpb").write_text(format_rpb(model))
    (temporary / f"{base}.xml").write_text(format_metadata(metadata_fields(
        sensor.id, camera, acquired, shape, pushbroom, heights, sun_zenith, sun_azimuth,
        view_zenith, view_azimuth)))
    shutil.rmtree(folder, ignore_errors=True)
    temporary.rename(folder)
    product = archive_folder(folder, out_dir / f"{base}.tar.gz") if archive else folder
    if archive:
        shutil.rmtree(folder)
    truth_path = write_truth(out_dir / f"{base}.truth.tif", truth, grid, names)
    dem_path = None
    if dem is not None:
        dem_path = write_truth(out_dir / f"{base}.dem.tif", elevation_on(dem, grid)[None], grid, ("height",))
    return Simulation(product, truth_path, dem_path, tile_id, worst,
                      (float(view_zenith.min()), float(view_zenith.max())))


def block_nodes(nodes: tuple[F64, F64], lines: slice, width: int) -> Callable[[F64], F64]:
    """Bilinear interpolation of node values to every pixel of a block of lines that starts on a node row."""
    step = int(nodes[0][1] - nodes[0][0]) if nodes[0].size > 1 else 1
    first = lines.start // step
    last = min(lines.stop // step + 2, nodes[0].size)
    local = (nodes[0][first:last] - lines.start, nodes[1])
    height = lines.stop - lines.start
    return lambda values: upsample_nodes(values[first:last], local, (height, width))


def unobservable(truth: F32, clipped: NDArray[np.bool_], rows: F64, cols: F64) -> F32:
    """The truth without the cells whose signal the camera clipped (bright roofs at 10 bits): no chain can
    return them."""
    lost = clipped.any(axis=0)
    cells = np.zeros((int(truth.shape[1]), int(truth.shape[2])), dtype=bool)
    r = np.clip(np.round(rows[lost]).astype(int), 0, cells.shape[0] - 1)
    c = np.clip(np.round(cols[lost]).astype(int), 0, cells.shape[1] - 1)
    cells[r, c] = True
    cells = ndimage.binary_dilation(cells, iterations=2)
    return np.where(cells[None], np.float32(np.nan), truth).astype(np.float32)


def anisotropy_factor(band: Band, geometry: tuple[F64, F64, F64, F64], centre: tuple[float, float],
                      acquired: datetime) -> F64 | None:
    """Roy et al.'s BRDF shape of a band in the observed geometry relative to its NBAR (node grid): what makes
    the NBAR truth look as the camera sees it. None for a band without a shape."""
    sun_zenith, sun_azimuth, view_zenith, view_azimuth = geometry
    shape = roy_coefficients(band)
    if shape is None:
        return None
    standard = nbar_sun_zenith(centre[1], centre[0], acquired, float(np.median(sun_zenith)))
    return np.asarray(brdf(shape, sun_zenith, view_zenith, view_azimuth - sun_azimuth)
                      / brdf(shape, standard, 0.0, 0.0))


def simulate_reference(truth_paths: dict[str, Path], source_sensor: str, sensor_id: str, tile_id: str, out_dir: Path,
                       camera: Camera, dem: Path | None = None) -> Path:
    """A nadir-viewing sensor's TOA of the same surface (Sentinel-2 L1C style: reflectance x 10000, band ids as
    band descriptions) on its 16 m truth grid: the reference of a cross-calibration."""
    sensor = get_sensor(sensor_id)
    truth, grid, names = truth_reflectance(truth_paths, source_sensor, sensor.id, tile_id)
    crs = crs_wkt(grid)
    (centre_lon, centre_lat), acquired = centre_and_time(grid, camera)
    shape = grid.shape.yx
    rows, cols = node_grid(shape[0], NODE_STEP), node_grid(shape[1], NODE_STEP)
    x = grid.affine.c + (cols + 0.5) * grid.affine.a
    y = grid.affine.f + (rows + 0.5) * grid.affine.e
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*np.meshgrid(x, y))
    sun_zenith, sun_azimuth = (np.asarray(v) for v in solar_angles(acquired, np.asarray(lat), np.asarray(lon)))
    nadir = np.zeros_like(sun_zenith)
    bands = tuple(b for b in sensor.reflective_bands if b.common_name in names)
    surface = np.nan_to_num(truth.astype(np.float64), nan=0.0)
    if camera.anisotropic:
        for k, band in enumerate(bands):
            factor = anisotropy_factor(band, (sun_zenith, sun_azimuth, nadir, nadir), (centre_lon, centre_lat),
                                       acquired)
            if factor is not None:
                surface[k] *= upsample_nodes(factor, (rows, cols), shape)
    table = load_table(sensor.id)
    terrain = elevation_on(dem, grid)[np.ix_(np.clip(rows, 0, shape[0] - 1).astype(int),
                                            np.clip(cols, 0, shape[1] - 1).astype(int))]
    atmosphere = Atmosphere(camera.aot550, camera.water_vapour, camera.ozone, camera.aerosol_model,
                            np.clip(terrain, 0, None) / 1000.0)
    dn = np.zeros((len(bands), *shape), dtype=np.uint16)
    valid = np.isfinite(truth).all(axis=0)
    for k, band in enumerate(bands):
        coef = coefficients(table, band.id, atmosphere, sun_zenith, nadir, sun_azimuth)
        nodes = (rows, cols)
        toa = toa_reflectance(surface[k], Coefficients(*(upsample_nodes(np.asarray(v, dtype=np.float64), nodes, shape)
                                                         for v in (coef.gain, coef.offset, coef.albedo))))
        dn[k] = np.where(valid, np.clip(np.round(toa * 10_000 * (1 + camera.gain_error)), 1, 65_534), 0)
    path = out_dir / f"{sensor.id}_{acquired:%Y%m%dT%H%M%S}_{tile_id}_simulated_TOA.tif"
    temporary = path.with_name(f".{path.name}.partial")
    with rasterio.open(temporary, "w", driver="GTiff", width=shape[1], height=shape[0], count=len(bands),
                       dtype="uint16", crs=crs, transform=grid.affine, nodata=0, tiled=True,
                       compress="deflate") as dataset:
        dataset.write(dn)
        for index, band in enumerate(bands, start=1):
            dataset.set_band_description(index, band.id)
        dataset.update_tags(SIMULATED="simulated by musyq from a real surface reflectance; view nadir",
                            DATETIME=f"{acquired:%Y-%m-%dT%H:%M:%SZ}")
    temporary.replace(path)
    return path


def centre_and_time(grid: GeoBox, camera: Camera) -> tuple[tuple[float, float], datetime]:
    """The truth's centre (lon, lat) and the acquisition time: the camera's, else 11 April 2021 at 10:30 local
    solar time there."""
    x, y = grid.affine * (grid.shape.x / 2, grid.shape.y / 2)
    lon, lat = Transformer.from_crs(crs_wkt(grid), "EPSG:4326", always_xy=True).transform(x, y)
    overpass = (datetime(2021, 4, 11) + timedelta(hours=10.5 - lon / 15)).replace(microsecond=0)
    return (float(lon), float(lat)), camera.acquired or overpass


def default_shape(grid: GeoBox, camera: Camera) -> tuple[int, int]:
    """An image that fits in the truth whatever the track heading: the inscribed square's share."""
    side = min(grid.shape.yx) * grid.affine.a * 0.7
    return (int(side / camera.line_spacing_m), int(side / camera.sample_spacing_m))


def product_name(sensor_id: str, lon: float, lat: float, camera: Camera, acquired: datetime) -> str:
    satellite, camera_id = sensor_id.split("_")
    return (f"{satellite}_{camera_id}_{'E' if lon >= 0 else 'W'}{abs(lon):.1f}_{'N' if lat >= 0 else 'S'}"
            f"{abs(lat):.1f}_{acquired:%Y%m%d}_L1A{camera.product_id}")


def metadata_fields(sensor_id: str, camera: Camera, acquired: datetime, shape: tuple[int, int], pushbroom: Pushbroom,
                    heights: tuple[float, float], sun_zenith: F64, sun_azimuth: F64,
                    view_zenith: F64, view_azimuth: F64) -> dict[str, str | float | int]:
    """The XML fields in CRESDA's order, with the values of the simulation."""
    satellite, camera_id = sensor_id.split("_")
    clock = acquired + (BEIJING if camera.clock == "beijing" else timedelta(0))
    duration = timedelta(seconds=shape[0] * camera.line_spacing_m / 6_800.0)
    corners = []
    for line, sample in ((0, 0), (0, shape[1] - 1), (shape[0] - 1, shape[1] - 1), (shape[0] - 1, 0)):
        satellite_xyz, sight = pushbroom.rays(np.array(float(line)), np.array(float(sample)))
        hit = ellipsoid_hit(satellite_xyz, sight, float(np.mean(heights)))
        corner_lon, corner_lat, _ = ECEF_TO_GEODETIC.transform(hit[0], hit[1], hit[2])
        corners.append((round(float(corner_lat), 6), round(float(corner_lon), 6)))
    middle = (sun_zenith.shape[0] // 2, sun_zenith.shape[1] // 2)

    def at_centre(values: F64) -> float:
        return round(float(values[middle]), 4)

    fields: dict[str, str | float | int] = {
        "SatelliteID": satellite, "SensorID": camera_id, "ReceiveTime": f"{clock + timedelta(minutes=5):%Y-%m-%d %H:%M:%S}",
        "OrbitID": 34567, "ProduceType": "SIMULATED", "SceneID": 9876543, "ProductID": camera.product_id,
        "ProductLevel": "LEVEL1A", "ProductQuality": "", "ProductQualityReport": "simulated by musyq from a real "
        "surface reflectance: not a CRESDA product", "ProductFormat": "GEOTIFF",
        "ProduceTime": f"{clock + timedelta(hours=8):%Y-%m-%d %H:%M:%S}",
        "Bands": ",".join(str(i + 1) for i in range(len(get_sensor(sensor_id).reflective_bands))),
        "StartTime": f"{clock - duration / 2:%Y-%m-%d %H:%M:%S}", "EndTime": f"{clock + duration / 2:%Y-%m-%d %H:%M:%S}",
        "CenterTime": f"{clock:%Y-%m-%d %H:%M:%S.%f}"[:-3], "ImageGSD": 16, "WidthInPixels": shape[1],
        "HeightInPixels": shape[0], "CloudPercent": 0, "PixelBits": DN_BITS[get_sensor(sensor_id).platform],
        "ValidPixelBits": DN_BITS[get_sensor(sensor_id).platform],
        "SolarAzimuth": at_centre(sun_azimuth), "SolarZenith": at_centre(sun_zenith),
        "SatelliteAzimuth": at_centre(view_azimuth), "SatelliteZenith": at_centre(view_zenith),
        "MapProjection": "", "ZoneNo": "",
    }
    for (name, (corner_lat, corner_lon)) in zip(("TopLeft", "TopRight", "BottomRight", "BottomLeft"), corners,
                                                strict=True):
        fields[f"{name}Latitude"] = corner_lat
        fields[f"{name}Longitude"] = corner_lon
    return fields


def write_image(path: Path, dn: NDArray[np.uint16]) -> None:
    """A plain striped uint16 GeoTIFF without georeference, as the Level-1A image is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # none is meant: the RPB places it
        with rasterio.open(path, "w", driver="GTiff", width=dn.shape[2], height=dn.shape[1], count=dn.shape[0],
                           dtype="uint16", interleave="band") as dataset:
            dataset.write(dn)


def write_truth(path: Path, values: F32, grid: GeoBox, names: tuple[str, ...]) -> Path:
    temporary = path.with_name(f".{path.name}.partial")
    with rasterio.open(temporary, "w", driver="GTiff", width=grid.shape.x, height=grid.shape.y, count=len(values),
                       dtype="float32", crs=crs_wkt(grid), transform=grid.affine, nodata=np.nan, tiled=True,
                       compress="deflate", predictor=3) as dataset:
        dataset.write(values.astype(np.float32))
        for index, name in enumerate(names, start=1):
            dataset.set_band_description(index, name)
    temporary.replace(path)
    return path

