"""Pixel quality from TOA reflectance: cloud, cloud shadow, snow, water and fill, with a cloud probability.

The musyq method follows Fmask (Zhu & Woodcock 2012; Qiu, Zhu & He 2019, "Fmask 4"):

1. spectral tests pick *potential* cloud pixels (bright, white, hazy in blue, not vegetation);
2. a cloud probability is formed from brightness (thermal, or the haze-optimized transform where
   there is no thermal band) times spectral flatness, and the threshold is set by the scene's own
   clear pixels, so a bright desert or a dark winter scene moves the threshold with it;
3. cloud objects are projected along the sun direction to find their shadows;
4. water and snow come from their own spectral tests; clouds and shadows are dilated.

Only the bands a sensor has are used: without shortwave infrared (Gaofen WFV) the tests fall back
to the visible and near infrared, without thermal to the haze-optimized transform.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray
from scipy import ndimage

from musyq.ard import cloudmodel
from musyq.core.errors import MissingBandError
from musyq.io.output import CLEAR, CLOUD, CLOUD_SHADOW, FILL, SNOW, WATER
from musyq.ard.shadow import ShadowGeometry, cloud_shadows, dark_pixels

Array = NDArray[np.float32]
Mask = NDArray[np.bool_]

REQUIRED = ("blue", "green", "red", "nir")
# clear land lies about this far below Fmask's haze line (HOT 0) in a clear scene; a tenth of the land
# higher than that means haze has lifted the clear line, up to what an AOD of about 1 does
HOT_CLEAR_DEPTH = 0.02
HOT_MAX_HAZE = 0.06
MIN_PIXELS_FOR_ALL_CLOUD = 40_000  # below this a tile sliver, not a cloudy scene, lacks clear land
# the trees learnt 30 m texture; on pixels much coarser their neighbourhood features mean something else,
# so there the rules alone decide
LEARNED_MAX_PIXEL_M = 120.0


@dataclass(frozen=True)
class MaskInputs:
    """TOA reflectance by common band name plus what the scene geometry says.

    ``bands`` needs blue, green, red and a near-infrared band (``nir`` or ``nir08``); swir16,
    swir22, cirrus and a brightness temperature in kelvin are used where given.
    """

    bands: Mapping[str, Array]
    sun_zenith: float
    sun_azimuth: float
    pixel_size: float
    view_zenith: float = 0.0
    view_azimuth: float = 0.0
    brightness_temperature: Array | None = None
    valid: Mask | None = None
    source: str = "input"

    def band(self, name: str) -> Array | None:
        if name == "nir":
            return self.bands.get("nir", self.bands.get("nir08"))
        return self.bands.get(name)

    def require(self) -> None:
        missing = [n for n in REQUIRED if self.band(n) is None]
        if missing:
            raise MissingBandError(self.source, f"the cloud mask needs the bands {', '.join(missing)} "
                                                f"(given: {', '.join(sorted(self.bands)) or 'none'})")


@dataclass(frozen=True)
class MaskSettings:
    """Thresholds and switches of one method."""

    probability_margin: float = 0.175  # added to the clear-land probability percentile (Fmask 4, Landsat 8)
    cirrus_weight: float = 0.3
    use_ndbi: bool = True  # Fmask 4 variability term
    use_hot_probability: bool = True  # Fmask 4 brightness term where there is no thermal band
    adaptive_hot: bool = True  # haze test relative to the scene's clear land, not a fixed 0.08
    min_cloud_area_m2: float = 9000.0  # smaller bright specks (roofs, glints) are not cloud objects
    cloud_buffer_m: float = 0.0
    shadow_buffer_m: float = 30.0
    shadow_reach_m: float = 150.0  # how far from a cast zone a dark pixel may still be its shadow
    learned: bool = False  # clouds from the trained classifier (musyq.ard.cloudmodel)
    learned_threshold: float = 0.7
    grow_probability: float = 0.3  # learned clouds grow into touching pixels of at least this probability
    learned_min_area_m2: float = 900.0
    rules_above: float | None = None  # keep the rules' clouds where the learned probability exceeds this
    # with blue, green, red and nir alone on pixels finer than the trees' 30 m, the thin edges that the block
    # means dilute are barely seen: the clouds are grown by this much (as CFMask grows its clouds by 3 px of 30 m)
    vnir_cloud_buffer_m: float = 60.0
    buffer_given: bool = False  # the user set the cloud buffer: no buffer of the method's own


@dataclass(frozen=True)
class SpectralTests:
    """Per-pixel outcomes of the spectral tests."""

    potential_cloud: Mask
    water: Mask
    snow: Mask
    land_probability: Array
    water_probability: Array


@dataclass(frozen=True)
class MaskResult:
    """The quality codes, a cloud probability in percent, and how the mask was reached."""

    quality: NDArray[np.uint8]
    cloud_probability: NDArray[np.uint8]
    notes: dict[str, float | str] = field(default_factory=dict)

    def fraction(self, code: int) -> float:
        valid = self.quality != FILL
        return float((self.quality[valid] == code).mean()) if valid.any() else math.nan

    def cropped(self, window: tuple[slice, slice]) -> MaskResult:
        """The mask of a part of the area it was computed on."""
        return MaskResult(self.quality[window], self.cloud_probability[window], self.notes)


def _percentile(values: Array, where: Mask, q: float, default: float) -> float:
    """Percentile of ``values[where]`` from an even subsample of at most about two million pixels."""
    step = max(values.size // 2_000_000, 1)
    sample = values.ravel()[::step][where.ravel()[::step]]
    return float(np.percentile(sample, q)) if sample.size else default


def _disk(radius: int) -> Mask:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return np.asarray(x * x + y * y <= radius * radius)


def _dilate(mask: Mask, metres: float, pixel_size: float) -> Mask:
    radius = int(round(metres / pixel_size))
    if radius < 1 or not mask.any():
        return mask
    return np.asarray(ndimage.binary_dilation(mask, structure=_disk(radius)))


def saturation_level(band: Array, valid: Mask, min_fraction: float = 5e-4) -> float:
    """The value a band clips at, found as a plateau of identical maximum values (infinity if none).

    A saturated detector clips many bright pixels (cloud, snow) to one value; a natural maximum
    is reached by a handful. Clipped visible bands break the whiteness and haze tests.
    """
    if not valid.any():
        return math.inf
    top = float(np.max(band, where=valid, initial=-np.inf))
    at_top = np.count_nonzero((band >= np.float32(top - 1e-6)) & valid)
    return top - 1e-6 if top >= 0.2 and at_top >= min_fraction * np.count_nonzero(valid) else math.inf


@njit(parallel=True, cache=True)
def _pixel_tests(
    blue: Array, green: Array, red: Array, nir: Array, swir16: Array, swir22: Array, celsius: Array,
    has_swir16: bool, has_swir22: bool, has_temperature: bool, saturation: NDArray[np.float64], valid: Mask,
    use_ndbi: bool, snow_ndsi: float,
) -> tuple[Array, Array, Mask, Mask, Mask]:  # pragma: no cover - compiled
    """Per pixel: HOT, the variability probability, the potential-cloud tests other than HOT, water, snow."""
    n = blue.size
    hot = np.empty(n, dtype=np.float32)
    variability_probability = np.empty(n, dtype=np.float32)
    spectral = np.zeros(n, dtype=np.bool_)
    water = np.zeros(n, dtype=np.bool_)
    snow = np.zeros(n, dtype=np.bool_)
    for i in prange(n):
        if not valid[i]:
            hot[i] = 0.0
            variability_probability[i] = 0.0
            continue
        b, g, r, v = blue[i], green[i], red[i], nir[i]
        clipped = b >= saturation[0] or g >= saturation[1] or r >= saturation[2]
        ndvi = (v - r) / (v + r) if v + r != 0 else 0.0
        ndsi = 0.0
        if has_swir16 and g + swir16[i] != 0:
            ndsi = (g - swir16[i]) / (g + swir16[i])
        mean = (b + g + r) / 3
        whiteness = (abs(b - mean) + abs(g - mean) + abs(r - mean)) / mean if mean > 0 else 1.0
        h = b - 0.5 * r - 0.08
        if clipped:
            whiteness, ndvi, ndsi = 0.0, 0.0, 0.0
            h = max(h, 0.08)
        hot[i] = h
        test = ndvi < 0.8 and whiteness < 0.7
        if has_swir16:
            test = test and ndsi < 0.8 and v > 0.75 * swir16[i]
        if has_swir22:
            test = test and swir22[i] > 0.03
        if has_temperature:
            test = test and celsius[i] < 27
        spectral[i] = test
        water[i] = (ndvi < 0.01 and v < 0.11) or (0 < ndvi < 0.1 and v < 0.05)
        if has_swir16:
            snow[i] = ndsi > snow_ndsi and v > 0.11 and g > 0.1 and (not has_temperature or celsius[i] < 10)
        variability = max(abs(ndvi), whiteness)
        if has_swir16:
            variability = max(variability, abs(ndsi))
            if use_ndbi and swir16[i] + v != 0:
                variability = max(variability, abs((swir16[i] - v) / (swir16[i] + v)))
        variability_probability[i] = 1 - variability
    return hot, variability_probability, spectral, water, snow


@njit(parallel=True, cache=True)
def _probabilities(
    hot: Array, variability_probability: Array, celsius: Array, water_brightness: Array, cirrus: Array,
    mode: int, low: float, high: float, water_temperature: float, has_cirrus: bool, cirrus_weight: float,
) -> tuple[Array, Array]:  # pragma: no cover - compiled
    """Land and water cloud scores; ``mode`` 0 thermal, 1 haze-optimized transform, 2 neither."""
    n = hot.size
    land = np.empty(n, dtype=np.float32)
    water = np.empty(n, dtype=np.float32)
    for i in prange(n):
        if mode == 0:
            brightness = max((high + 4 - celsius[i]) / (high + 4 - (low - 4)), 0.0)
        elif mode == 1:
            brightness = min(max((hot[i] - low) / (high - low), 0.0), 1.0)
        else:
            brightness = 1.0
        land[i] = brightness * variability_probability[i]
        bright = min(max(water_brightness[i] / 0.11, 0.0), 1.0)
        water[i] = max((water_temperature - celsius[i]) / 4, 0.0) * bright if mode == 0 else bright
        if has_cirrus:
            thin = max(cirrus[i] / 0.04, 0.0)
            land[i] += cirrus_weight * thin
            water[i] += thin
    return land, water


@dataclass(frozen=True)
class SceneThresholds:
    """What the spectral tests learn from a scene's own clear pixels.

    Learnt once per scene (from an overview of it) and applied to every tile, so that the tiles of one
    scene are judged alike and a tile that catches only a sliver of the scene is not judged on it alone.
    """

    saturation: tuple[float, float, float]  # blue, green, red clipping levels (infinite if none)
    hot_limit: float
    brightness_low: float
    brightness_high: float
    water_temperature: float
    land_threshold: float
    all_potential_is_cloud: bool  # no clear land to set a threshold from (Fmask's rule)


def spectral_tests(
    inputs: MaskInputs, settings: MaskSettings, valid: Mask, thresholds: SceneThresholds | None = None,
) -> tuple[SpectralTests, SceneThresholds]:
    """Potential cloud, water, snow and the cloud probability, pixel by pixel, and the thresholds used.

    Without ``thresholds`` they are learnt from ``inputs`` themselves.
    """
    blue, green, red, nir = (inputs.band(n) for n in REQUIRED)
    assert blue is not None and green is not None and red is not None and nir is not None
    swir16, swir22, cirrus = inputs.band("swir16"), inputs.band("swir22"), inputs.band("cirrus")
    temperature = inputs.brightness_temperature
    shape = valid.shape
    none = np.zeros(1, dtype=np.float32)

    def flat(array: Array | None) -> Array:
        return none if array is None else np.ascontiguousarray(array, dtype=np.float32).ravel()

    celsius = None if temperature is None else temperature - np.float32(273.15)
    saturation = thresholds.saturation if thresholds is not None else tuple(
        saturation_level(b, valid) for b in (blue, green, red))
    # without a temperature to rule out warm cloud edges, snow takes the stricter MODIS NDSI limit (Hall et al.)
    hot, variability_probability, spectral, water, snow = _pixel_tests(
        flat(blue), flat(green), flat(red), flat(nir), flat(swir16), flat(swir22), flat(celsius),
        swir16 is not None, swir22 is not None, celsius is not None, np.array(saturation), valid.ravel(),
        settings.use_ndbi, 0.15 if celsius is not None else 0.4)

    if thresholds is not None:
        hot_limit = thresholds.hot_limit
    elif settings.adaptive_hot:
        # over bright soil clear land sits well below 0: a thin cloud raises HOT above the clear
        # land around it long before it crosses Fmask's fixed limit. Haze lifts the whole clear line
        # instead (Zhang et al. 2002): the line is then the scene's own, fitted to its clearest land
        lift = max(0.0, _percentile(hot, valid.ravel() & ~water, 10, 0.0))
        ceiling = min(lift + min(lift, HOT_CLEAR_DEPTH), HOT_MAX_HAZE)
        hot_limit = min(ceiling, _percentile(hot, valid.ravel() & (hot <= ceiling), 82.5, 0.0))
    else:
        hot_limit = 0.0
    potential = spectral & (hot > hot_limit)
    if cirrus is not None:
        potential |= flat(cirrus) > 0.01
    potential &= valid.ravel()

    clear_land = valid.ravel() & ~potential & ~water
    clear_water = valid.ravel() & ~potential & water
    mode = 0 if celsius is not None else 1 if settings.use_hot_probability else 2
    if thresholds is not None:
        low, high = thresholds.brightness_low, thresholds.brightness_high
        water_temperature = thresholds.water_temperature
    elif mode == 0:
        low = _percentile(flat(celsius), clear_land, 17.5, 0.0)
        high = _percentile(flat(celsius), clear_land, 82.5, 30.0)
        water_temperature = _percentile(flat(celsius), clear_water, 82.5, 20.0)
    elif mode == 1:
        low = _percentile(hot, clear_land, 17.5, -0.1) - 0.04
        high = _percentile(hot, clear_land, 82.5, 0.0) + 0.04
        water_temperature = 20.0
    else:
        low, high, water_temperature = 0.0, 1.0, 20.0
    land_probability, water_probability = _probabilities(
        hot, variability_probability, flat(celsius), flat(swir16 if swir16 is not None else nir), flat(cirrus),
        mode, low, high, water_temperature, cirrus is not None, settings.cirrus_weight)

    if thresholds is None:
        clear_share = float(clear_land.sum() / max(valid.sum(), 1))
        thresholds = SceneThresholds(
            (float(saturation[0]), float(saturation[1]), float(saturation[2])), hot_limit, low, high,
            water_temperature, _percentile(land_probability, clear_land, 82.5, 0.0) + settings.probability_margin,
            clear_share < 0.03 and valid.sum() >= MIN_PIXELS_FOR_ALL_CLOUD)
    tests = SpectralTests(potential.reshape(shape), (water & valid.ravel()).reshape(shape),
                          (snow & valid.ravel()).reshape(shape), land_probability.reshape(shape),
                          water_probability.reshape(shape))
    return tests, thresholds


def cloud_probability(land: Array, water: Array, is_water: Mask, potential: Mask, threshold: float) -> Array:
    """One probability per pixel in percent, with 50 where the pixel's own threshold lies.

    Land and water scores have different thresholds (the scene's own and 0.5); each is mapped
    piecewise linearly so that 0 -> 0, threshold -> 50 and twice the threshold (or more) -> 100.
    Pixels that fail the potential-cloud tests stay below 50.
    """
    score = np.where(is_water, water, land)
    limit = np.where(is_water, np.float32(0.5), np.float32(max(threshold, 1e-3)))
    percent = np.where(score < limit, 50 * score / limit, 50 + 50 * (score - limit) / limit)
    percent = np.clip(percent, 0, 100)
    percent = np.where(potential, percent, np.minimum(percent, 49))
    return percent.astype(np.float32)


def _remove_small(mask: Mask, min_pixels: int) -> Mask:
    if min_pixels <= 1 or not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return np.asarray(keep[labels])


def _grown(core: Mask, candidate: Mask) -> Mask:
    """The connected regions of ``candidate`` that hold some ``core`` pixel: thin cloud edges join their cloud."""
    labels, count = ndimage.label(candidate | core, structure=np.ones((3, 3), dtype=bool))
    keep = np.zeros(count + 1, dtype=bool)
    keep[labels[core]] = True
    keep[0] = False
    return np.asarray(keep[labels])


def _valid_inputs(inputs: MaskInputs) -> tuple[MaskInputs, Mask]:
    """The pixels every band has, and the inputs with gaps in the thermal band given a neutral temperature."""
    inputs.require()
    nir = inputs.band("nir")
    assert nir is not None
    valid = np.ones(nir.shape, dtype=bool) if inputs.valid is None else inputs.valid.copy()
    for array in inputs.bands.values():
        valid &= np.isfinite(array)
    temperature = inputs.brightness_temperature
    if temperature is not None and not np.isfinite(temperature[valid]).all():
        # the thermal footprint differs a little from the reflective one: there, a neutral temperature
        known = valid & np.isfinite(temperature)
        neutral = np.float32(np.median(temperature[known])) if known.any() else np.float32(288.0)
        inputs = replace(inputs, brightness_temperature=np.where(np.isfinite(temperature), temperature, neutral))
    return inputs, valid


def fmask_quality(inputs: MaskInputs, settings: MaskSettings, thresholds: SceneThresholds | None = None) -> MaskResult:
    """Fmask-style mask: spectral tests, a scene-adaptive probability, shadows where clouds cast them."""
    inputs, valid = _valid_inputs(inputs)
    nir = inputs.band("nir")
    assert nir is not None
    tests, learnt = spectral_tests(inputs, settings, valid, thresholds)
    potential, water = tests.potential_cloud, tests.water

    cloud = potential & ((~water & (tests.land_probability > learnt.land_threshold))
                         | (water & (tests.water_probability > 0.5)))
    if learnt.all_potential_is_cloud:
        cloud = potential.copy()  # a scene without clear land to set the threshold from (Fmask)
    cloud = _remove_small(cloud, int(round(settings.min_cloud_area_m2 / inputs.pixel_size**2)))
    groups = None
    if settings.learned and inputs.pixel_size <= LEARNED_MAX_PIXEL_M:
        bands = {n: b for n in cloudmodel.NEEDED if (b := inputs.band(n)) is not None}
        groups = cloudmodel.groups_available(bands, inputs.brightness_temperature)
        learned = cloudmodel.cloud_probability(bands, inputs.brightness_temperature, valid, inputs.pixel_size,
                                               cloudmodel.shipped_model(groups))
        rules = cloud & (learned > settings.rules_above) if settings.rules_above is not None else None
        cloud = _remove_small(_grown(learned > settings.learned_threshold, learned > settings.grow_probability),
                              int(round(settings.learned_min_area_m2 / inputs.pixel_size**2)))
        if rules is not None:
            cloud |= rules
        if groups == ("vnir",) and inputs.pixel_size < cloudmodel.EVALUATION_M and not settings.buffer_given:
            settings = replace(settings, cloud_buffer_m=settings.vnir_cloud_buffer_m)
    neighbours = ndimage.convolve(cloud.astype(np.uint8), np.ones((3, 3), dtype=np.uint8), mode="constant")
    cloud |= (neighbours >= 5) & valid
    notes: dict[str, float | str] = {"land_threshold": round(learnt.land_threshold, 4)}
    if groups is not None:
        notes["cloud_model"] = cloudmodel.model_name(groups)

    shadow = np.zeros_like(cloud)
    if cloud.any():
        darkness = [b for b in (nir, inputs.band("swir16")) if b is not None]
        dark = dark_pixels(darkness, valid & ~cloud & ~water, valid, inputs.pixel_size) & ~water
        geometry = ShadowGeometry.from_angles(inputs.sun_zenith, inputs.sun_azimuth, inputs.view_zenith,
                                              inputs.view_azimuth, inputs.pixel_size)
        found = cloud_shadows(cloud, dark, valid, geometry, int(round(settings.shadow_reach_m / inputs.pixel_size)))
        shadow = found.shadow
        notes.update({"cloud_objects": found.cloud_objects, "shadows_matched": found.matched_objects})
        if math.isfinite(found.scene_height_m):
            notes["cloud_height_m"] = round(found.scene_height_m, 0)

    cloud = _dilate(cloud, settings.cloud_buffer_m, inputs.pixel_size) & valid
    shadow = _dilate(shadow, settings.shadow_buffer_m, inputs.pixel_size) & valid & ~cloud
    quality = np.full(valid.shape, CLEAR, dtype=np.uint8)
    quality[water] = WATER
    quality[tests.snow] = SNOW
    quality[shadow] = CLOUD_SHADOW
    quality[cloud] = CLOUD
    quality[~valid] = FILL
    probability = cloud_probability(tests.land_probability, tests.water_probability, water, potential,
                                    learnt.land_threshold)
    if groups is not None:
        t = settings.learned_threshold
        trees = np.where(learned < t, 50 * learned / t, 50 + 50 * (learned - t) / (1 - t)).astype(np.float32)
        kept = learned > settings.rules_above if settings.rules_above is not None else np.zeros_like(valid)
        probability = np.where(kept, np.maximum(trees, probability), trees)
    percent = np.where(valid, np.rint(probability), 0).astype(np.uint8)
    return MaskResult(quality, percent, notes)


class MaskMethod(str, Enum):
    """The cloud-mask methods a user can choose; ``musyq`` is the default."""

    musyq = "musyq"
    rules = "rules"
    learned = "learned"
    fmask = "fmask"


_RULES = MaskSettings()
METHODS: dict[MaskMethod, MaskSettings] = {
    # the trees' clouds, and the rules' clouds where the trees do not rule them out: the trees carry the
    # absolute tests a scene-relative threshold lacks on snow, ice, bright soil and haze over clear land
    MaskMethod.musyq: replace(_RULES, learned=True, rules_above=0.005),
    # Fmask 4 tests, a haze test relative to the scene, buffers tuned on hand-labelled scenes
    MaskMethod.rules: _RULES,
    # gradient-boosted trees trained on the L8 Biome patches alone (the spectral tests still give water and snow)
    MaskMethod.learned: replace(_RULES, learned=True),
    # Fmask 3.3 as in python-fmask: fixed haze limit, no HOT probability or NDBI, 0.2 margin,
    # 5 px cloud and 10 px shadow buffers (at 30 m)
    MaskMethod.fmask: MaskSettings(probability_margin=0.2, use_ndbi=False, use_hot_probability=False,
                                   adaptive_hot=False, cloud_buffer_m=150.0, shadow_buffer_m=300.0),
}


def learn_thresholds(inputs: MaskInputs, method: MaskMethod | str = MaskMethod.musyq) -> SceneThresholds:
    """The thresholds a scene's own pixels set (give an overview of the whole scene)."""
    inputs, valid = _valid_inputs(inputs)
    return spectral_tests(inputs, METHODS[MaskMethod(method)], valid)[1]


def compute_mask(
    inputs: MaskInputs, method: MaskMethod | str = MaskMethod.musyq, cloud_buffer_m: float | None = None,
    shadow_buffer_m: float | None = None, thresholds: SceneThresholds | None = None,
) -> MaskResult:
    """The quality layer of ``inputs`` by the named method, optionally with other buffer distances and
    with thresholds learnt from the whole scene (``learn_thresholds``)."""
    settings = METHODS[MaskMethod(method)]
    if cloud_buffer_m is not None:
        settings = replace(settings, cloud_buffer_m=cloud_buffer_m, buffer_given=True)
    if shadow_buffer_m is not None:
        settings = replace(settings, shadow_buffer_m=shadow_buffer_m)
    return fmask_quality(inputs, settings, thresholds)


def with_bands(inputs: MaskInputs, names: tuple[str, ...]) -> MaskInputs:
    """The same inputs restricted to some bands (to emulate a sensor with fewer bands)."""
    return replace(inputs, bands={k: v for k, v in inputs.bands.items() if k in names})
