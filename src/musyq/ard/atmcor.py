"""Atmospheric correction: lookup-table interpolation, the per-pixel inversion and its coefficients.

For every band the 6S coupling (see :mod:`musyq.ard.lut`) reduces, at a given geometry and atmosphere,
to three numbers, the same ones 6S reports for its own correction mode::

    y = gain * rho_toa - offset ;  rho_s = y / (1 + albedo * y)

They vary slowly across a tile (with the angles, the aerosol and the vapour), so they are computed
on a coarse grid and interpolated per pixel inside the numba kernel that applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from musyq.ard.lut import BandTable, path_transmittance

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Atmosphere:
    """The state of the atmosphere a correction assumes (arrays broadcast against the geometry)."""

    aot550: ArrayLike = 0.2
    water_vapour: ArrayLike = 1.5  # g cm-2
    ozone: ArrayLike = 0.3  # cm-atm
    aerosol_model: str = "continental"
    elevation_km: ArrayLike = 0.0


def pressure_ratio(elevation_km: ArrayLike) -> Array:
    """Surface pressure over sea-level pressure in the US standard atmosphere."""
    return np.asarray((1.0 - 0.0225577 * np.asarray(elevation_km, dtype=np.float64)) ** 5.25588)


@dataclass(frozen=True)
class Coefficients:
    """Per-band correction coefficients: ``y = gain*toa - offset``, ``rho_s = y / (1 + albedo*y)``."""

    gain: Array
    offset: Array
    albedo: Array


def _cubic_weights(nodes: Array, x: Array) -> tuple[NDArray[np.intp], Array]:
    """Four-point Lagrange weights on a non-uniform grid; the window is kept inside the grid."""
    x = np.clip(x, nodes[0], nodes[-1])
    start = np.clip(np.searchsorted(nodes, x, side="right") - 2, 0, len(nodes) - 4)
    index = start[..., None] + np.arange(4)
    points = nodes[index]
    weights = np.ones(index.shape)
    for k in range(4):
        for m in range(4):
            if m != k:
                weights[..., k] *= (x - points[..., m]) / (points[..., k] - points[..., m])
    return index, weights


def _zenith_weights(nodes: Array, zenith: Array) -> tuple[NDArray[np.intp], Array, NDArray[np.bool_]]:
    """Cubic weights in zenith with the nodes mirrored through nadir.

    A direction at zenith -t and azimuth f is the one at +t and f + 180, so the grid continues
    below zero with the mirrored azimuth and near-nadir points get a centred window. Returns the
    real node index, the weight and whether the node is a mirrored one.
    """
    extended = np.concatenate([-nodes[2:0:-1], nodes])
    index, weights = _cubic_weights(extended, zenith)
    return np.abs(index - 2), weights, index < 2


@numba.njit(parallel=True, cache=True)
def _cubic_4d(
    grid: Array, ia: NDArray[np.intp], wa: Array, iz_s: NDArray[np.intp], wz_s: Array, ms: NDArray[np.bool_],
    iz_v: NDArray[np.intp], wz_v: Array, mv: NDArray[np.bool_], ip: NDArray[np.intp], wp: Array,
) -> Array:  # pragma: no cover - compiled
    """Tensor-product four-point interpolation of a (first axis, sun, view, azimuth) table.

    A mirrored sun or view node (but not both) reads the table at the mirrored azimuth, which on
    an azimuth grid symmetric about 90 degrees is the node counted from the other end.
    """
    out = np.empty(ia.shape[0])
    last = grid.shape[3] - 1
    for n in numba.prange(ia.shape[0]):
        total = 0.0
        for a in range(4):
            if wa[n, a] == 0.0:
                continue
            for s in range(4):
                was = wa[n, a] * wz_s[n, s]
                for v in range(4):
                    wasv = was * wz_v[n, v]
                    flip = ms[n, s] != mv[n, v]
                    for p in range(4):
                        azimuth = last - ip[n, p] if flip else ip[n, p]
                        total += wasv * wp[n, p] * grid[ia[n, a], iz_s[n, s], iz_v[n, v], azimuth]
        out[n] = total
    return out


def _relative_azimuth(azimuth: Array) -> Array:
    folded = np.mod(np.abs(azimuth), 360.0)
    return np.where(folded > 180.0, 360.0 - folded, folded)


def scattering(
    table: BandTable, band: str, model: str, aot: Array, sun_zenith: Array, view_zenith: Array, relative_azimuth: Array,
    height_km: Array,
) -> tuple[Array, Array, Array, Array, Array]:
    """Path and Rayleigh reflectance, downward and upward transmittance and spherical albedo."""
    b, m = table.index(band), table.model(model)
    shape = aot.shape
    ia, wa = _cubic_weights(table.aot550, aot.reshape(-1))
    iz_s, wz_s, ms = _zenith_weights(table.zenith, sun_zenith.reshape(-1))
    iz_v, wz_v, mv = _zenith_weights(table.zenith, view_zenith.reshape(-1))
    ip, wp = _cubic_weights(table.azimuth, _relative_azimuth(relative_azimuth.reshape(-1)))
    geometry = (iz_s, wz_s, ms, iz_v, wz_v, mv, ip, wp)

    def four_d(grid: Array, first: NDArray[np.intp], first_weights: Array) -> Array:
        return np.asarray(_cubic_4d(np.ascontiguousarray(grid), first, first_weights, *geometry))

    def two_d(grid: Array, first: NDArray[np.intp], first_weights: Array, iz: NDArray[np.intp], wz: Array) -> Array:
        return np.asarray((grid[first[:, :, None], iz[:, None, :]] * first_weights[:, :, None]
                           * wz[:, None, :]).sum(axis=(-2, -1)))

    height = height_km.reshape(-1)
    path = (four_d(table.smooth_path[b, m], ia, wa)
            + table.single_scattering(b, m, aot.reshape(-1), sun_zenith.reshape(-1), view_zenith.reshape(-1),
                                      relative_azimuth.reshape(-1)))
    rayleigh = four_d(table.rayleigh[b, m], ia, wa)
    down = two_d(table.transmittance[b, m], ia, wa, iz_s, wz_s)
    up = two_d(table.transmittance[b, m], ia, wa, iz_v, wz_v)
    albedo = (table.spherical_albedo[b, m][ia] * wa).sum(axis=-1)
    if np.any(height > 0):
        # Above sea level the molecular path reflectance is swapped for the thinner atmosphere's,
        # linear between pressure nodes (two taps of the four).
        nodes = table.pressure_ratio[::-1]
        pressure = pressure_ratio(height)
        k = np.clip(np.searchsorted(nodes, pressure) - 1, 0, len(nodes) - 2)
        u = np.clip((pressure - nodes[k]) / (nodes[k + 1] - nodes[k]), 0.0, 1.0)
        taps = np.stack([k, k + 1, k + 1, k + 1], axis=-1)
        tap_weights = np.stack([1 - u, u, np.zeros_like(u), np.zeros_like(u)], axis=-1)
        sea = np.full_like(taps, len(nodes) - 1)
        sea_weights = np.tile([1.0, 0.0, 0.0, 0.0], (len(u), 1))
        molecular_path = np.ascontiguousarray(table.molecular_path[b][::-1])
        shift = four_d(molecular_path, taps, tap_weights) - four_d(molecular_path, sea, sea_weights)
        path, rayleigh = path + shift, rayleigh + shift
        # Transmittance and spherical albedo, where aerosol and molecules couple, come from 6S runs
        # at fixed heights, linear in height between them and sea level.
        downs = np.stack([down, *(two_d(t, ia, wa, iz_s, wz_s) for t in table.elevated_transmittance[b, m])])
        ups = np.stack([up, *(two_d(t, ia, wa, iz_v, wz_v) for t in table.elevated_transmittance[b, m])])
        albedos = np.stack([albedo, *((s_level[ia] * wa).sum(axis=-1)
                                      for s_level in table.elevated_spherical_albedo[b, m])])
        heights = np.concatenate([[0.0], table.elevation_km])
        h = np.clip(np.searchsorted(heights, height) - 1, 0, len(heights) - 2)
        f = np.clip((height - heights[h]) / (heights[h + 1] - heights[h]), 0.0, 1.0)
        points = np.arange(len(height))
        down = (1 - f) * downs[h, points] + f * downs[h + 1, points]
        up = (1 - f) * ups[h, points] + f * ups[h + 1, points]
        albedo = (1 - f) * albedos[h, points] + f * albedos[h + 1, points]
    return (path.reshape(shape), rayleigh.reshape(shape), down.reshape(shape), up.reshape(shape),
            np.asarray(albedo).reshape(shape))


def gas_transmittance(
    table: BandTable, band: str, air_mass: Array, water_vapour: Array, ozone: Array, ratio: Array
) -> tuple[Array, Array, Array]:
    """Ozone-and-mixed-gas, water-vapour and half-water-vapour transmittance along the two-way path.

    The mixed gases' column shrinks with surface pressure (``ratio``); vapour and ozone are columns
    above the target as given.
    """
    b = table.index(band)
    others = (path_transmittance(table.gas_ozone[b], ozone * air_mass)
              * path_transmittance(table.gas_mixed[b], air_mass * ratio))
    water = path_transmittance(table.gas_water[b], water_vapour * air_mass)
    half_water = path_transmittance(table.gas_water[b], 0.5 * water_vapour * air_mass)
    return others, water, half_water


def coefficients(
    table: BandTable, band: str, atmosphere: Atmosphere, sun_zenith: ArrayLike, view_zenith: ArrayLike,
    relative_azimuth: ArrayLike,
) -> Coefficients:
    """Correction coefficients of one band at every point of the (broadcast) inputs."""
    sun, view, azimuth, aot, vapour, ozone, elevation = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (sun_zenith, view_zenith, relative_azimuth, atmosphere.aot550,
                                                     atmosphere.water_vapour, atmosphere.ozone,
                                                     atmosphere.elevation_km)))
    ratio = pressure_ratio(elevation)
    path, rayleigh, down, up, albedo = scattering(table, band, atmosphere.aerosol_model, aot, sun, view, azimuth,
                                                  elevation)
    air_mass = 1.0 / np.cos(np.radians(np.minimum(sun, 89.0))) + 1.0 / np.cos(np.radians(np.minimum(view, 89.0)))
    others, water, half_water = gas_transmittance(table, band, air_mass, vapour, ozone, ratio)
    surface_transmittance = water * down * up
    gain = 1.0 / (others * surface_transmittance)
    offset = (rayleigh + (path - rayleigh) * half_water) / surface_transmittance
    return Coefficients(gain, offset, albedo)


def surface_reflectance(toa: ArrayLike, coef: Coefficients) -> Array:
    """Invert TOA reflectance to Lambertian surface reflectance."""
    y = coef.gain * np.asarray(toa, dtype=np.float64) - coef.offset
    return np.asarray(y / (1.0 + coef.albedo * y))


def toa_reflectance(surface: ArrayLike, coef: Coefficients) -> Array:
    """The forward model: TOA reflectance of a Lambertian surface."""
    rho = np.asarray(surface, dtype=np.float64)
    return np.asarray((rho / (1.0 - coef.albedo * rho) + coef.offset) / coef.gain)


@numba.njit(cache=True)
def node_bracket(position: int, nodes: NDArray[np.intp]) -> tuple[int, float]:
    if nodes.size == 1:
        return 0, 0.0
    step = nodes[1] - nodes[0]
    lower = min(position // step, nodes.size - 2)
    return lower, (position - nodes[lower]) / (nodes[lower + 1] - nodes[lower])


@numba.njit(cache=True)
def bilinear_sample(grid: Array, r0: int, r1: int, c0: int, c1: int, ur: float, uc: float) -> float:
    """Bilinear value between four coarse nodes."""
    return float((1 - ur) * ((1 - uc) * grid[r0, c0] + uc * grid[r0, c1])
                 + ur * ((1 - uc) * grid[r1, c0] + uc * grid[r1, c1]))


@numba.njit(parallel=True, cache=True)
def _bilinear(coarse: Array, row_nodes: NDArray[np.intp], col_nodes: NDArray[np.intp],
              out: NDArray[np.float32]) -> None:  # pragma: no cover - compiled
    height, width = out.shape
    last_row, last_col = row_nodes.size - 1, col_nodes.size - 1
    for r in numba.prange(height):
        r0, ur = node_bracket(r, row_nodes)
        r1 = min(r0 + 1, last_row)
        for c in range(width):
            c0, uc = node_bracket(c, col_nodes)
            out[r, c] = bilinear_sample(coarse, r0, r1, c0, min(c0 + 1, last_col), ur, uc)


def upsample(coarse: Array, row_nodes: NDArray[np.intp], col_nodes: NDArray[np.intp],
             shape: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear from a ``coarse_nodes`` grid to every pixel."""
    out = np.empty(shape, dtype=np.float32)
    _bilinear(np.ascontiguousarray(coarse, dtype=np.float64), row_nodes, col_nodes, out)
    return out


def coarse_nodes(size: int, step: int) -> NDArray[np.intp]:
    """Pixel positions of the coarse coefficient grid along one axis (every ``step``, plus the last)."""
    nodes = np.arange(0, size, step)
    if nodes[-1] != size - 1:
        nodes = np.append(nodes, size - 1)
    return nodes


# radiative-transfer codes agree to about 1 % (CEOS ARD): the part of the SR error no table or AOD explains
RADIATIVE_TRANSFER_ERROR = 0.01


@dataclass(frozen=True)
class SigmaTerms:
    """What a band's SR sigma is made of: the TOA ``calibration`` (relative) through the inversion's slope, the
    AOD's sigma as the secant to coefficients at a shifted AOD (``shifted``, scaled by ``aot_ratio`` = sigma /
    shift on the nodes), the tables' ``interpolation`` error and the radiative-transfer ``model`` error
    (relative), in quadrature."""

    shifted: Coefficients
    aot_ratio: Array
    calibration: float
    interpolation: float
    model: float = RADIATIVE_TRANSFER_ERROR


@numba.njit(parallel=True, cache=True)
def _invert_on_grid(
    toa: NDArray[np.float32], gain: Array, offset: Array, albedo: Array, shifted_gain: Array, shifted_offset: Array,
    shifted_albedo: Array, aot_ratio: Array, row_nodes: NDArray[np.intp], col_nodes: NDArray[np.intp],
    calibration: float, interpolation: float, model: float, out: NDArray[np.float32], sigma: NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    """Surface reflectance into ``out`` and, where ``sigma`` is not empty, its sigma in the same pass."""
    height, width = toa.shape
    last_row, last_col = row_nodes.size - 1, col_nodes.size - 1
    with_sigma = sigma.size > 0
    for r in numba.prange(height):
        r0, ur = node_bracket(r, row_nodes)
        r1 = min(r0 + 1, last_row)
        for c in range(width):
            value = toa[r, c]
            if not np.isfinite(value):
                out[r, c] = np.nan
                if with_sigma:
                    sigma[r, c] = np.nan
                continue
            c0, uc = node_bracket(c, col_nodes)
            c1 = min(c0 + 1, last_col)
            g = bilinear_sample(gain, r0, r1, c0, c1, ur, uc)
            y = g * value - bilinear_sample(offset, r0, r1, c0, c1, ur, uc)
            denominator = 1.0 + bilinear_sample(albedo, r0, r1, c0, c1, ur, uc) * y
            surface = y / denominator
            out[r, c] = surface
            if not with_sigma:
                continue
            # d rho / d toa = g / (1 + S y)^2, times the calibration's sigma of the TOA reflectance
            from_calibration = calibration * value * g / (denominator * denominator)
            y2 = bilinear_sample(shifted_gain, r0, r1, c0, c1, ur, uc) * value - bilinear_sample(shifted_offset, r0, r1, c0, c1, ur, uc)
            shifted = y2 / (1.0 + bilinear_sample(shifted_albedo, r0, r1, c0, c1, ur, uc) * y2)
            from_aerosol = (shifted - surface) * bilinear_sample(aot_ratio, r0, r1, c0, c1, ur, uc)
            sigma[r, c] = np.sqrt(from_calibration**2 + from_aerosol**2 + interpolation**2 + (model * surface) ** 2)


def correct_band(
    toa: NDArray[np.float32], coef: Coefficients, row_nodes: NDArray[np.intp], col_nodes: NDArray[np.intp],
    out: NDArray[np.float32], sigma: tuple[NDArray[np.float32], SigmaTerms] | None = None,
) -> None:
    """Surface reflectance of a band whose coefficients sit on a ``coarse_nodes`` grid; with ``sigma`` (an output
    array and its terms) also its one-sigma uncertainty, in the same pass over the pixels."""
    def grid(values: Array) -> Array:
        return np.ascontiguousarray(values, dtype=np.float64)

    target, terms = sigma if sigma is not None else (np.empty((0, 0), dtype=np.float32),
                                                     SigmaTerms(coef, coef.gain, 0.0, 0.0, 0.0))
    _invert_on_grid(toa, grid(coef.gain), grid(coef.offset), grid(coef.albedo), grid(terms.shifted.gain),
                    grid(terms.shifted.offset), grid(terms.shifted.albedo), grid(terms.aot_ratio), row_nodes,
                    col_nodes, float(terms.calibration), float(terms.interpolation), float(terms.model), out, target)
