"""Retrieving the atmosphere from the image itself: aerosol optical depth and water vapour.

Both work on blocks of a few kilometres, where the atmosphere can be taken as constant, and
invert the same lookup tables the correction uses, so the retrieved state is the one that
makes the correction consistent with the TOA signal.

* Aerosol over dark dense vegetation (Kaufman et al. 1997, with the MODIS Collection 5 surface
  relations of Levy et al. 2007): where the 2.2 um surface reflectance is between 0.01 and 0.25,
  the red surface reflectance follows it with a slope that grows with the canopy's greenness and the
  scattering angle, and blue follows red. The AOD is the one whose simulated blue and red TOA best
  match the observed ones. Where too few blocks hold dark vegetation, a climatological AOD is taken
  and the note says so.
* Aerosol from the shape of vegetated pixels' spectra (Guanter et al. 2005, as in iCOR), for any
  sensor with blue, green, red and NIR: the surface of a few reference pixels, chosen across the
  vegetated part of a block's NDVI range, must be a mixture of a green-vegetation and a bare-soil
  spectrum; too little aerosol leaves blue too bright for any mixture, too much makes it too dark.
  The AOD is the one that lets the mixtures reproduce the reference pixels' TOA in every band.
* Aerosol from a surface-reflectance prior, for sensors without a 2.2 um band: the same fit, with
  the blue and red surface taken from a harmonized reflectance of the same place.
* Water vapour from the 945 nm absorption band against the 865 nm window (Sentinel-2 B09/B8A):
  the vapour is the one for which the window's surface reflectance, carried through the
  absorbing band's atmosphere, reproduces its TOA reflectance.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from musyq.ard.atmcor import (
    Atmosphere,
    Coefficients,
    coefficients,
    surface_reflectance,
    toa_reflectance,
)
from musyq.ard.lut import BandTable, scattering_angle
from musyq.ard.brdf import brdf, roy_coefficients
from musyq.core.sensors import Band, endmember_bands, get_sensor

Array = NDArray[np.float64]

AOT_CANDIDATES = np.linspace(0.0, 1.5, 76)
VAPOUR_CANDIDATES = np.linspace(0.05, 6.0, 120)
DARK_SWIR = (0.01, 0.25)
MIN_DARK_PIXELS = 100
# below this share of blocks with dark vegetation the retrieval is too thin to fill the rest from
MIN_RETRIEVED_SHARE = 0.1
ENDMEMBER_BANDS = ("blue", "green", "red", "nir")
VEGETATED_NDVI = 0.5  # reference pixels are vegetated: built-up and bare ones are not veg-soil mixtures
REFERENCE_CLASSES = 5
DARKEST_PERCENT = 10.0  # in each NDVI class, the pixels darkest in blue (least adjacency, strongest signal)
# prior surfaces darker than this in blue carry the aerosol's signal best; up to the bright limit they serve
# where a block has too few dark ones, if the blue or red TOA still moves by the minimum signal over the AOD range
DARK_PRIOR_BLUE = 0.12
BRIGHT_PRIOR_BLUE = 0.35
BRIGHT_MIN_SIGNAL = 0.05
CLIMATOLOGY_AOT = 0.15  # global mean AOD at 550 nm over land (MODIS and AERONET, about 0.15)


@dataclass(frozen=True)
class Blocks:
    """Square blocks of ``size`` pixels tiling an image, with each block's centre pixel."""

    size: int
    shape: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        return -(-self.shape[0] // self.size), -(-self.shape[1] // self.size)

    def centres(self) -> tuple[Array, Array]:
        rows, cols = self.grid
        r = np.minimum(np.arange(rows) * self.size + self.size / 2, self.shape[0] - 1)
        c = np.minimum(np.arange(cols) * self.size + self.size / 2, self.shape[1] - 1)
        return r, c

    def interpolate(self, values: Array, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> Array:
        """Per-block values, linearly interpolated between block centres, at the given pixel rows and columns."""
        r, c = self.centres()
        across = np.stack([np.interp(cols, c, row) for row in values])
        return np.stack([np.interp(rows, r, column) for column in across.T], axis=1)

    def enough(self, counts: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Blocks with enough usable pixels for a retrieval (a quarter of a small block)."""
        return np.asarray(counts >= min(MIN_DARK_PIXELS, self.size**2 // 4))

    def split(self, image: NDArray[Any]) -> NDArray[Any]:
        """(block_row, block_col, pixels) view of an image, padded with NaN/False to whole blocks."""
        rows, cols = self.grid
        fill = np.nan if np.issubdtype(image.dtype, np.floating) else 0
        padded = np.full((rows * self.size, cols * self.size), fill, dtype=image.dtype)
        padded[: image.shape[0], : image.shape[1]] = image
        return padded.reshape(rows, self.size, cols, self.size).swapaxes(1, 2).reshape(rows, cols, -1)


class Channel(NamedTuple):
    """A band's id in the table and its TOA reflectance."""

    band: str
    toa: NDArray[np.float32]


@dataclass(frozen=True)
class BlockState:
    """Per-block geometry and what is known of the atmosphere so far (arrays on the block grid)."""

    sun_zenith: Array
    view_zenith: Array
    relative_azimuth: Array
    water_vapour: Array
    elevation_km: Array
    ozone: float
    aerosol_model: str

    def coefficients(self, table: BandTable, band: str, where: NDArray[np.bool_], aot: ArrayLike,
                     water_vapour: ArrayLike | None = None) -> Coefficients:
        """Coefficients at the blocks ``where`` (one row each) for candidate columns of AOD or vapour."""
        vapour = self.water_vapour[where][:, None] if water_vapour is None else water_vapour
        atmosphere = Atmosphere(aot, vapour, self.ozone, self.aerosol_model, self.elevation_km[where][:, None])
        return coefficients(table, band, atmosphere, self.sun_zenith[where][:, None],
                            self.view_zenith[where][:, None], self.relative_azimuth[where][:, None])


@dataclass(frozen=True)
class Retrieval:
    """A field on the block grid and how it was obtained."""

    values: Array
    note: str
    assumed: bool = False  # a stand-in value (climatology), not evidence from the scene


def _best_candidate(misfit: Array, candidates: Array) -> Array:
    """The candidate of least misfit along the last axis, refined by a parabola through its neighbours."""
    best = np.argmin(misfit, axis=-1)
    inner = np.clip(best, 1, len(candidates) - 2)
    take = np.take_along_axis
    left, mid, right = (take(misfit, (inner + k)[..., None], axis=-1)[..., 0] for k in (-1, 0, 1))
    curvature = left - 2 * mid + right
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(curvature > 0, 0.5 * (left - right) / curvature, 0.0)
    step = candidates[1] - candidates[0]
    refined = candidates[inner] + np.clip(shift, -1, 1) * step
    return np.asarray(np.where(best == inner, refined, candidates[best]), dtype=np.float64)


def fill_and_smooth(values: Array, retrieved: NDArray[np.bool_], sigma: float = 1.0) -> Array:
    """Fill blocks without a retrieval from the nearest retrieved block, then smooth."""
    if not retrieved.any():
        return np.asarray(values, dtype=np.float64)
    _, nearest = ndimage.distance_transform_edt(~retrieved, return_indices=True)
    filled = values[tuple(nearest)]
    return np.asarray(ndimage.gaussian_filter(filled, sigma, mode="nearest"), dtype=np.float64)


def _masked_mean(values: NDArray[Any], where: NDArray[np.bool_]) -> Array:
    count = where.sum(axis=-1)
    total = np.where(where, values, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(count > 0, total / count, np.nan), dtype=np.float64)


def masked_median(values: NDArray[Any], where: NDArray[np.bool_]) -> Array:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks with nothing usable
        return np.asarray(np.nanmedian(np.where(where, values, np.nan), axis=-1), dtype=np.float64)


def _finish(values: Array, retrieved: NDArray[np.bool_], method: str, fallback: float,
            min_share: float = 0.0) -> Retrieval:
    share = float(retrieved.mean())
    if not retrieved.any() or share < min_share:
        found = f"{method} in {100 * share:.0f}% of blocks" if retrieved.any() else f"no {method}"
        warnings.warn(f"{found}: too few usable pixels for an aerosol retrieval; AOD {fallback} assumed",
                      stacklevel=3)
        return Retrieval(np.full(values.shape, fallback), f"climatology {fallback} ({found})", assumed=True)
    if share < MIN_RETRIEVED_SHARE:
        warnings.warn(f"{method}: aerosol retrieved in only {100 * share:.0f}% of the blocks; the rest is filled "
                      "from them", stacklevel=3)
    return Retrieval(fill_and_smooth(values, retrieved), f"{method} in {100 * share:.0f}% of blocks")


def dark_vegetation_surface(swir22: Array, ndvi_swir: Array, scattering: Array) -> tuple[Array, Array]:
    """Blue and red surface reflectance of dark vegetation from its 2.1 um reflectance (Levy et al. 2007).

    ``red = swir22 * slope + intercept`` with ``slope = s(NDVI_SWIR) + 0.002 theta - 0.27`` (s from 0.48 at
    NDVI_SWIR 0.25 to 0.58 at 0.75) and ``intercept = 0.033 - 0.00025 theta``; ``blue = 0.49 red + 0.005``.
    NDVI_SWIR is that of 1.24 and 2.1 um; the near infrared stands in for 1.24 um, where a canopy reflects
    nearly as much. Theta is the scattering angle in degrees.
    """
    greenness = 0.48 + 0.1 * np.clip((ndvi_swir - 0.25) / 0.5, 0.0, 1.0)
    red = swir22 * (greenness + 0.002 * scattering - 0.27) + (0.033 - 0.00025 * scattering)
    return 0.49 * red + 0.005, red


def _fit_aot(
    table: BandTable, state: BlockState, where: NDArray[np.bool_], observed: list[tuple[str, Array]],
    surface: Callable[[Callable[[str], Coefficients]], list[Array]],
) -> Array:
    """The AOD per block (``where``) that best reproduces the observed TOA (band id, per-block mean) of
    the surface that ``surface`` estimates for every candidate AOD (given the bands' coefficients)."""

    def coef(band: str) -> Coefficients:
        return state.coefficients(table, band, where, AOT_CANDIDATES[None, :])

    misfit = np.zeros((int(where.sum()), len(AOT_CANDIDATES)))
    for (band, toa), estimate in zip(observed, surface(coef), strict=True):
        misfit += (toa_reflectance(estimate, coef(band)) - toa[:, None]) ** 2
    return _best_candidate(misfit, AOT_CANDIDATES)


def dark_target_aot(
    table: BandTable, channels: dict[str, Channel], valid: NDArray[np.bool_], blocks: Blocks, state: BlockState,
    fallback: float,
) -> Retrieval:
    """AOD at 550 nm per block from dark dense vegetation; ``channels`` has blue, red, nir and swir22."""
    blue, red, nir, swir = (blocks.split(channels[k].toa) for k in ("blue", "red", "nir", "swir22"))
    inside = blocks.split(valid).astype(bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
        dark = inside & (swir >= DARK_SWIR[0]) & (swir <= DARK_SWIR[1]) & (ndvi > 0.3) & (blue < 0.25)
    retrieved = blocks.enough(dark.sum(axis=-1))
    # the 20th-50th percentile of the dark pixels' SWIR in each block: dark, but not the darkest (shadows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks without dark pixels
        low, high = np.nanpercentile(np.where(dark, swir, np.nan), (20, 50), axis=-1)
    chosen = dark & (swir >= low[..., None]) & (swir <= high[..., None])
    means = {name: _masked_mean(stack, chosen) for name, stack in (("blue", blue), ("red", red), ("nir", nir),
                                                                   ("swir22", swir))}
    values = np.full(retrieved.shape, np.nan)
    if retrieved.any():
        swir_toa = means["swir22"][retrieved][:, None]
        nir_toa = means["nir"][retrieved][:, None]
        ndvi_swir = (nir_toa - swir_toa) / (nir_toa + swir_toa)
        theta = scattering_angle(state.sun_zenith[retrieved], state.view_zenith[retrieved],
                                 state.relative_azimuth[retrieved])[:, None]

        def surface(coef: Callable[[str], Coefficients]) -> list[Array]:
            swir_surface = np.clip(surface_reflectance(swir_toa, coef(channels["swir22"].band)), 0.0, None)
            blue_surface, red_surface = dark_vegetation_surface(swir_surface, ndvi_swir, theta)
            return [blue_surface, red_surface]

        observed = [(channels[name].band, means[name][retrieved]) for name in ("blue", "red")]
        values[retrieved] = _fit_aot(table, state, retrieved, observed, surface)
    return _finish(values, retrieved, "dark target", fallback, MIN_RETRIEVED_SHARE)


def reference_pixels(toa: dict[str, NDArray[Any]], usable: NDArray[np.bool_],
                     needed: int) -> tuple[Array, NDArray[np.bool_]]:
    """Per block, the median TOA spectrum (``ENDMEMBER_BANDS``) of each of ``REFERENCE_CLASSES`` NDVI classes of
    the vegetated pixels, from the pixels darkest in blue: (block_row, block_col, class, band) and which blocks
    have ``needed`` vegetated pixels."""
    blue, red, nir = toa["blue"], toa["red"], toa["nir"]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
    vegetated = usable & (ndvi > VEGETATED_NDVI) & (blue < 0.25)
    enough = vegetated.sum(axis=-1) >= max(needed, REFERENCE_CLASSES)
    spectra = np.full((*enough.shape, REFERENCE_CLASSES, len(ENDMEMBER_BANDS)), np.nan)
    stack = np.stack([toa[n] for n in ENDMEMBER_BANDS], axis=-1)
    for r, c in zip(*np.nonzero(enough), strict=True):
        inside = vegetated[r, c]
        values, greenness = stack[r, c][inside], ndvi[r, c][inside]
        classes = np.minimum((np.argsort(np.argsort(greenness)) * REFERENCE_CLASSES) // len(greenness),
                             REFERENCE_CLASSES - 1)
        for k in range(REFERENCE_CLASSES):
            member = values[classes == k]
            darkest = member[member[:, 0] <= np.percentile(member[:, 0], DARKEST_PERCENT)]
            spectra[r, c, k] = np.median(darkest, axis=0)
    return spectra, enough


def _mixture_fit(surface: Array, members: Array, weights: Array) -> Array:
    """The non-negative mixture of the endmembers (2, bands) closest to each surface spectrum (last axis bands),
    in the weighted least-squares sense."""
    w = weights / weights.sum()
    gram = (members * w) @ members.T
    rhs = (surface * w) @ members.T
    det = gram[0, 0] * gram[1, 1] - gram[0, 1] ** 2
    both = np.stack([gram[1, 1] * rhs[..., 0] - gram[0, 1] * rhs[..., 1],
                     gram[0, 0] * rhs[..., 1] - gram[0, 1] * rhs[..., 0]], axis=-1) / det
    single = [np.clip(rhs[..., [k]] / gram[k, k], 0.0, None) * np.eye(2)[k] for k in range(2)]
    candidates = np.stack([np.where((both >= 0).all(axis=-1, keepdims=True), both, 0.0), *single], axis=-2)
    fitted = candidates @ members
    misfit = (((fitted - surface[..., None, :]) ** 2) * w).sum(axis=-1)
    misfit[..., 0] = np.where((both >= 0).all(axis=-1), misfit[..., 0], np.inf)
    best = np.argmin(misfit, axis=-1)
    return np.asarray(np.take_along_axis(fitted, best[..., None, None], axis=-2)[..., 0, :], dtype=np.float64)


def endmember_aot(
    table: BandTable, channels: dict[str, Channel], valid: NDArray[np.bool_], blocks: Blocks, state: BlockState,
    fallback: float,
) -> Retrieval:
    """AOD at 550 nm per block from the spectral shape of vegetated pixels; ``channels`` has ``ENDMEMBER_BANDS``."""
    toa = {n: blocks.split(channels[n].toa) for n in ENDMEMBER_BANDS}
    needed = min(MIN_DARK_PIXELS * REFERENCE_CLASSES // 2, blocks.size**2 // 4)
    spectra, retrieved = reference_pixels(toa, blocks.split(valid).astype(bool), needed)
    values = np.full(retrieved.shape, np.nan)
    if retrieved.any():
        band_ids = tuple(channels[n].band for n in ENDMEMBER_BANDS)
        members = endmember_bands(table.sensor_id, band_ids)
        sensor = get_sensor(table.sensor_id)
        weights = np.array([sensor.band(b).center_wavelength ** -2.0 for b in band_ids])  # blue counts most
        observed = spectra[retrieved]  # (blocks, classes, bands)
        coefs = [state.coefficients(table, b, retrieved, AOT_CANDIDATES[None, :]) for b in band_ids]
        expand = [Coefficients(c.gain[:, None], c.offset[:, None], c.albedo[:, None]) for c in coefs]
        surface = np.stack([surface_reflectance(observed[:, :, [k]], expand[k]) for k in range(len(band_ids))],
                           axis=-1)  # (blocks, classes, candidates, bands)
        mixture = _mixture_fit(surface, members, weights)
        simulated = np.stack([toa_reflectance(mixture[..., k], expand[k]) for k in range(len(band_ids))], axis=-1)
        misfit = (((simulated - observed[:, :, None, :]) ** 2) * weights).sum(axis=-1)
        # an AOD that makes any reference pixel's surface negative is impossible
        misfit = np.where((surface < 0).any(axis=-1), np.inf, misfit).sum(axis=1)
        possible = np.isfinite(misfit).any(axis=-1)
        worst = np.where(np.isfinite(misfit), misfit, -np.inf).max(axis=-1, keepdims=True)
        block_values = _best_candidate(np.where(np.isfinite(misfit), misfit, 2 * worst + 1.0), AOT_CANDIDATES)
        values[retrieved] = np.where(possible, block_values, np.nan)
        retrieved = retrieved & np.isfinite(values)
    return _finish(values, retrieved, "endmember fit", fallback, MIN_RETRIEVED_SHARE)


def view_factor(band: Band, state: BlockState) -> Array:
    """Per block, the surface reflectance in the observed geometry over that seen from nadir under the same
    sun, by Roy et al.'s fixed BRDF shape (1 for bands it does not cover)."""
    shape = roy_coefficients(band)
    if shape is None:
        return np.ones_like(state.sun_zenith)
    observed = brdf(shape, state.sun_zenith, state.view_zenith, state.relative_azimuth)
    return np.asarray(observed / brdf(shape, state.sun_zenith, 0.0, 0.0))


def prior_surface_aot(
    table: BandTable, channels: dict[str, Channel], prior: dict[str, NDArray[np.float32]], valid: NDArray[np.bool_],
    blocks: Blocks, state: BlockState, fallback: float, clear: NDArray[np.bool_] | None = None,
    at_nadir: bool = True,
) -> Retrieval:
    """AOD at 550 nm per block from a surface-reflectance prior of the same place (blue and red).

    For sensors without a 2.2 um band (Gaofen WFV): the prior (a harmonized surface reflectance of
    another sensor, or a composite) stands for the surface; the AOD is the one whose simulated
    TOA of that surface matches the observed blue and red, over pixels that are dark enough in
    blue for the aerosol signal to dominate.

    The prior also screens the pixels itself: a pixel brighter in blue than its prior surface under
    the thickest aerosol of the tables is cloud. Blocks where the
    quality mask's ``clear`` pixels are enough use those; elsewhere (a four-band mask can call a whole hazy
    scene cloud) the screened pixels serve.

    Blocks without enough dark pixels (deserts, bright bare soil, cities) take the bright ones instead, as
    Zhong et al. (2020) take a surface reflectance database over bright stable surfaces: a known bright surface
    still tells the aerosol, from the blue path radiance and the red attenuation, wherever the tables show the
    TOA changing enough with it.
    """
    names = ("blue", "red")
    toa = {n: blocks.split(channels[n].toa) for n in names}
    # a nadir prior (NBAR) is put in this camera's view, up to 35 degrees off nadir, where the surface looks otherwise
    view = {n: view_factor(get_sensor(table.sensor_id).band(channels[n].band), state) if at_nadir
            else np.ones_like(state.sun_zenith) for n in names}
    surface_prior = {n: blocks.split(prior[n]) * view[n][..., None] for n in names}
    every = np.ones(blocks.grid, dtype=bool)
    flat = surface_prior["blue"].reshape(-1, surface_prior["blue"].shape[-1])
    brightest = toa_reflectance(np.nan_to_num(flat), state.coefficients(
        table, channels["blue"].band, every, [[AOT_CANDIDATES[-1]]])).reshape(surface_prior["blue"].shape)
    prior_blue = surface_prior["blue"]
    with np.errstate(invalid="ignore"):
        screened = (blocks.split(valid).astype(bool) & np.isfinite(prior_blue) & np.isfinite(surface_prior["red"])
                    & (prior_blue > 0.0) & (toa["blue"] <= brightest))
        dark = screened & (prior_blue < DARK_PRIOR_BLUE) & (toa["blue"] < 0.3)
        bright = screened & (prior_blue >= DARK_PRIOR_BLUE) & (prior_blue < BRIGHT_PRIOR_BLUE)
    if clear is not None:
        is_clear = blocks.split(clear).astype(bool)
        dark, bright = ((np.where(blocks.enough((kind & is_clear).sum(axis=-1))[..., None], kind & is_clear, kind))
                        for kind in (dark, bright))
    on_bright = ~blocks.enough(dark.sum(axis=-1)) & blocks.enough(bright.sum(axis=-1))
    usable = np.where(on_bright[..., None], bright, dark)
    retrieved = blocks.enough(usable.sum(axis=-1))
    medians = {f"toa_{n}": masked_median(toa[n], usable) for n in names}
    medians.update({f"prior_{n}": masked_median(surface_prior[n], usable) for n in names})
    if on_bright.any():
        # over a bright surface the aerosol's brightening and dimming nearly cancel: no retrieval where neither
        # band's TOA moves by BRIGHT_MIN_SIGNAL over the tables' AOD range
        signal = np.zeros(blocks.grid)
        for n in names:
            known = np.nan_to_num(medians[f"prior_{n}"]).reshape(-1, 1)
            clean, thick = (toa_reflectance(known, state.coefficients(table, channels[n].band, every, [[aot]]))
                            .reshape(blocks.grid) for aot in (AOT_CANDIDATES[0], AOT_CANDIDATES[-1]))
            signal = np.maximum(signal, np.abs(thick - clean))
        retrieved &= ~on_bright | (signal >= BRIGHT_MIN_SIGNAL)
    values = np.full(retrieved.shape, np.nan)
    if retrieved.any():
        estimates = [medians[f"prior_{n}"][retrieved][:, None] for n in names]
        observed = [(channels[n].band, medians[f"toa_{n}"][retrieved]) for n in names]
        values[retrieved] = _fit_aot(table, state, retrieved, observed, lambda coef: estimates)
    result = _finish(values, retrieved, "surface prior", fallback)
    bright_share = float((retrieved & on_bright).sum() / max(int(retrieved.sum()), 1))
    if bright_share > 0 and not result.assumed:
        result = Retrieval(result.values, f"{result.note}, over bright surfaces in {100 * bright_share:.0f}%")
    return result


def water_vapour_from_band(
    table: BandTable, channels: dict[str, Channel], valid: NDArray[np.bool_], blocks: Blocks, state: BlockState,
    aot: float, fallback: float,
) -> Retrieval:
    """Column water vapour (g cm-2) per block from the 945 nm band (``wv``) and the 865 nm window (``nir08``)."""
    absorbing, window = blocks.split(channels["wv"].toa), blocks.split(channels["nir08"].toa)
    inside = blocks.split(valid).astype(bool) & (window > 0.1) & np.isfinite(absorbing)
    retrieved = blocks.enough(inside.sum(axis=-1))
    values = np.full(retrieved.shape, np.nan)
    if retrieved.any():
        toa_absorbing = masked_median(absorbing, inside)[retrieved]
        toa_window = masked_median(window, inside)[retrieved]
        window_coef, absorbing_coef = (state.coefficients(table, channels[name].band, retrieved, aot,
                                                          VAPOUR_CANDIDATES[None, :]) for name in ("nir08", "wv"))
        surface = surface_reflectance(toa_window[:, None], window_coef)
        misfit = (toa_reflectance(surface, absorbing_coef) - toa_absorbing[:, None]) ** 2
        values[retrieved] = _best_candidate(misfit, VAPOUR_CANDIDATES)
    if not retrieved.any():
        return Retrieval(np.full(retrieved.shape, fallback), f"fallback {fallback}", assumed=True)
    return Retrieval(fill_and_smooth(values, retrieved),
                     f"from the 945 nm band in {100 * float(retrieved.mean()):.0f}% of blocks")

