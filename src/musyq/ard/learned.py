"""A learned atmospheric correction: a small network taught by musyq's own physics.

The physical correction needs an aerosol retrieval, which needs bands (2.2 um) or a surface prior that small
missions lack. The emulator learns the atmosphere from the scene instead, from cases the 6S tables make:
surfaces of the spectral library (PROSAIL canopies, soils, waters, and mixtures of them) seen through random
atmospheres (AOD 0-0.8, water vapour, ozone, surface height) in random sun and view geometries, so it can be
taught for any sensor musyq has SRFs and tables for.

What a pixel's own TOA cannot tell, the atmosphere, comes from its scene: the 1st, 10th and 50th percentiles
of each band's TOA over the scene's clear land (dark objects carry the path reflectance), together with the
sun and view angles and the surface pressure. From these the network gives each band's inversion coefficients
(``rho = y / (1 + S y)``, ``y = gain toa - offset``, the form of 6S's own correction), and is taught through
that inversion to minimise the error of the surface reflectance of the scene's pixels. The physics keeps the
learned part small and smooth: it runs on the coarse coefficient grid, and the per-pixel pass is the physical
correction's. Several members trained from different starts make an ensemble; their spread in surface
reflectance, scaled on held-out scenes so that it covers the errors as often as one sigma should, is the
per-pixel uncertainty.

The network is a plain multilayer perceptron trained with Adam by the numpy code here (a few thousand
weights: no framework is worth its install for that).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numba
import numpy as np
import rasterio
from numpy.typing import NDArray

from musyq.ard.atmcor import Atmosphere, coefficients, pressure_ratio, toa_reflectance
from musyq.ard.bandpass import generate_library
from musyq.ard.lut import load_table
from musyq.core.errors import InputError, MusyqError
from musyq.core.sensors import get_sensor, reflectance_bands

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

PERCENTILES = (1.0, 10.0, 50.0)  # of each band's TOA over the scene's clear land: the scene context
GEOMETRY = ("cos_sun_zenith", "cos_view_zenith", "cos_relative_azimuth", "pressure_ratio", "water_vapour_given",
            "water_vapour")
AOT_RANGE = (0.0, 0.8)
SUN_ZENITH_RANGE = (15.0, 70.0)
WATER_VAPOUR_RANGE = (0.3, 4.0)
# half the training scenes come with their water vapour (a user's or a reanalysis value, 10 % off), so that a
# correction told it uses it (no four-band sensor sees it), and one not told falls back to the range's middle
VAPOUR_GIVEN_SHARE = 0.5
VAPOUR_GIVEN_ERROR = 0.1
OZONE_RANGE = (0.25, 0.4)
ELEVATION_KM_RANGE = (0.0, 2.0)
MAX_WATER_SHARE = 0.2
MIXED_SHARE = 0.5  # of a scene's pixels, mixtures of two library surfaces (field edges, sparse canopies)
PIXELS_PER_SCENE = 256
ONE_SIGMA_COVERAGE = 0.6827
TERMS = ("gain", "offset", "albedo")  # the network's outputs, each for every band


@dataclass(frozen=True)
class Cases:
    """Simulated scenes: each scene's context (``context_names``), its pixels' TOA and true surface (scenes,
    pixels, bands), its AOD, and the true inversion coefficients (scenes, terms, bands)."""

    context: F32
    toa: F32
    surface: F32
    aot550: F32
    truth: F32


def context_names(bands: tuple[str, ...]) -> tuple[str, ...]:
    return (*GEOMETRY, *(f"p{p:g}_{b}" for p in PERCENTILES for b in bands))


def scene_context(toa: F32 | F64, clear: NDArray[np.bool_]) -> F64:
    """The percentiles of each band's TOA (first axis bands) over the clear pixels, band by band."""
    values = toa.reshape(toa.shape[0], -1)[:, clear.ravel()]
    if values.shape[1] == 0:
        raise MusyqError("no clear land to take the scene's context from: the learned correction needs some")
    return np.asarray(np.percentile(values, PERCENTILES, axis=1), dtype=np.float64).ravel()


def geometry_features(sun_zenith: F64, view_zenith: F64, relative_azimuth: F64, elevation_km: F64,
                      water_vapour: F64 | float | None) -> F64:
    """The geometry (and vapour) part of the context, last axis the ``GEOMETRY`` names; ``water_vapour`` NaN or
    None where it is not known."""
    vapour = np.asarray(np.nan if water_vapour is None else water_vapour, dtype=np.float64)
    given = np.isfinite(vapour)
    return np.stack(np.broadcast_arrays(np.cos(np.radians(sun_zenith)), np.cos(np.radians(view_zenith)),
                                        np.cos(np.radians(relative_azimuth)), pressure_ratio(elevation_km),
                                        given.astype(np.float64),
                                        np.where(given, vapour, np.mean(WATER_VAPOUR_RANGE))), axis=-1)


@dataclass(frozen=True)
class SurfaceImage:
    """Real surface reflectance to draw scenes from, with its layout: a tile's fields, forests, towns and waters
    in the shares and contrasts a real scene has, which a library's random draws lack."""

    reflectance: F32  # (bands, rows, cols)
    cover: NDArray[np.uint8]  # 1 clear land, 2 water, 0 neither


LAND, WATER_COVER = 1, 2
SMALLEST_WINDOW = 24  # pixels a side of the windows scenes are drawn from


def read_surface_image(path: Path, sensor_id: str, bands: tuple[str, ...]) -> SurfaceImage:
    """The bands of a musyq SR COG (by common name) and, from the MASK beside it, its clear land and water."""
    names = [get_sensor(sensor_id).band(b).common_name for b in bands]
    mask_path = path.with_name(path.name.replace(".SR.", ".MASK."))
    try:
        with rasterio.open(path) as source:
            described = list(source.descriptions)
            missing = [n for n in names if n not in described]
            if missing:
                raise InputError(path, f"has no band {', '.join(missing)} (it has {', '.join(map(str, described))})")
            reflectance = np.stack([source.read(described.index(n) + 1, masked=True).astype(np.float32)
                                    .filled(np.nan) * source.scales[0] + source.offsets[0] for n in names])
        with rasterio.open(mask_path) as mask:
            quality = mask.read(1)
    except rasterio.RasterioIOError as exc:
        raise InputError(path, f"cannot read it or the MASK beside it ({exc})") from None
    reflectance = reflectance.astype(np.float32)
    usable = np.isfinite(reflectance).all(axis=0)
    cover = np.where(usable & (quality == 1), LAND, np.where(usable & (quality == 2), WATER_COVER, 0))
    if int((cover == LAND).sum()) < PIXELS_PER_SCENE:
        raise InputError(path, f"has {int((cover == LAND).sum())} clear land pixels; scenes need "
                               f"{PIXELS_PER_SCENE} or more")
    return SurfaceImage(reflectance, cover.astype(np.uint8))


def clear_land_pixels(path: Path) -> int:
    """Clear land pixels of a musyq SR COG, from the MASK beside it."""
    try:
        with rasterio.open(path.with_name(path.name.replace(".SR.", ".MASK."))) as mask:
            return int((mask.read(1) == LAND).sum())
    except rasterio.RasterioIOError as exc:
        raise InputError(path, f"has no readable MASK beside it ({exc})") from None


def library_scenes(sensor_id: str, bands: tuple[str, ...], scenes: int, seed: int,
                   rng: np.random.Generator) -> tuple[F64, NDArray[np.bool_]]:
    """Surfaces (scenes, pixels, bands) of the spectral library drawn with ``seed``, and which are water."""
    wavelength, library = generate_library(3000, seed)
    land = reflectance_bands(sensor_id, wavelength, library["land"], bands)
    water = reflectance_bands(sensor_id, wavelength, library["water"], bands)
    n = PIXELS_PER_SCENE
    picks = land[rng.integers(0, len(land), (scenes, n))]
    water_count = (rng.uniform(0, MAX_WATER_SHARE, scenes) * n).astype(int)
    is_water = np.arange(n)[None, :] >= (n - water_count)[:, None]
    picks[is_water] = water[rng.integers(0, len(water), int(is_water.sum()))]
    mixed = (rng.uniform(0, 1, (scenes, n)) < MIXED_SHARE) & ~is_water
    share = rng.uniform(0, 1, (scenes, n, 1))
    others = land[rng.integers(0, len(land), (scenes, n))]
    return np.where(mixed[..., None], share * picks + (1 - share) * others, picks), is_water


def image_scenes(images: tuple[SurfaceImage, ...], scenes: int,
                 rng: np.random.Generator) -> tuple[F64, NDArray[np.bool_]]:
    """Surfaces (scenes, pixels, bands) drawn from random windows of real images, and which are water: each
    scene the pixels of one window, of a random size, holding enough clear land."""
    n = PIXELS_PER_SCENE
    surface = np.empty((scenes, n, images[0].reflectance.shape[0]))
    is_water = np.zeros((scenes, n), dtype=bool)
    made = 0
    while made < scenes:
        image = images[int(rng.integers(len(images)))]
        rows, cols = image.cover.shape
        size = int(rng.integers(min(SMALLEST_WINDOW, rows, cols), min(rows, cols) + 1))
        top, left = int(rng.integers(rows - size + 1)), int(rng.integers(cols - size + 1))
        cover = image.cover[top:top + size, left:left + size].ravel()
        usable = np.flatnonzero(cover > 0)
        if int((cover == LAND).sum()) < n // 4:
            continue
        picks = usable[rng.integers(0, len(usable), n)]
        window = image.reflectance[:, top:top + size, left:left + size]
        surface[made] = window.reshape(window.shape[0], -1)[:, picks].T
        is_water[made] = cover[picks] == WATER_COVER
        made += 1
    return surface, is_water


def simulate_cases(sensor_id: str, bands: tuple[str, ...], scenes: int, seed: int,
                   images: tuple[SurfaceImage, ...] = ()) -> Cases:
    """``scenes`` simulated scenes of ``PIXELS_PER_SCENE`` pixels each, under random atmospheres and geometries:
    surfaces from a library drawn with ``seed``, half from real ``images`` where some are given."""
    table = load_table(sensor_id)
    rng = np.random.default_rng(seed)
    from_images = scenes // 2 if images else 0
    surface, is_water = library_scenes(sensor_id, bands, scenes - from_images, seed, rng)
    if from_images:
        real, real_water = image_scenes(images, from_images, rng)
        surface, is_water = np.concatenate([surface, real]), np.concatenate([is_water, real_water])

    column = (scenes, 1)
    aot = rng.uniform(*AOT_RANGE, column)
    elevation = rng.uniform(*ELEVATION_KM_RANGE, column)
    vapour = rng.uniform(*WATER_VAPOUR_RANGE, column)
    atmosphere = Atmosphere(aot, vapour, rng.uniform(*OZONE_RANGE, column), "continental", elevation)
    told = np.where(rng.uniform(0, 1, scenes) < VAPOUR_GIVEN_SHARE,
                    vapour[:, 0] * (1 + VAPOUR_GIVEN_ERROR * rng.standard_normal(scenes)), np.nan)
    sun, view = rng.uniform(*SUN_ZENITH_RANGE, column), rng.uniform(0.0, _max_view_zenith(sensor_id), column)
    azimuth = rng.uniform(0.0, 180.0, column)
    coefs = [coefficients(table, band, atmosphere, sun, view, azimuth) for band in bands]
    toa = np.stack([toa_reflectance(surface[..., k], coef) for k, coef in enumerate(coefs)], axis=-1)
    truth = np.stack([np.stack([np.broadcast_to(getattr(c, t), column)[:, 0] for c in coefs], axis=-1)
                      for t in TERMS], axis=1)
    context = np.stack([scene_context(toa[s].T, ~is_water[s]) for s in range(scenes)])
    geometry = geometry_features(sun[:, 0], view[:, 0], azimuth[:, 0], elevation[:, 0], told)
    return Cases(np.concatenate([geometry, context], axis=1).astype(np.float32), toa.astype(np.float32),
                 surface.astype(np.float32), aot[:, 0].astype(np.float32), truth.astype(np.float32))


def _max_view_zenith(sensor_id: str) -> float:
    """How far off nadir the sensor looks: Gaofen WFV's outer cameras 35 degrees, the others 12."""
    return 35.0 if get_sensor(sensor_id).family == "gaofen" else 12.0


@dataclass(frozen=True)
class Network:
    """A multilayer perceptron with tanh hidden layers and a linear output."""

    weights: tuple[F32, ...]
    biases: tuple[F32, ...]

    def __call__(self, x: F32) -> F32:
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            if k < len(self.weights) - 1:
                np.tanh(x, out=x)
        return x


Gradient = Callable[[NDArray[np.intp], F32], F32]


def train_network(x: F32, outputs: int, gradient: Gradient, hidden: tuple[int, ...], epochs: int, seed: int,
                  batch: int = 32, rate: float = 3e-3) -> Network:
    """Adam on minibatches of the rows of ``x``; ``gradient(rows, predictions)`` is the loss's gradient with
    respect to the network's outputs. The rate is cut threefold at a third and two thirds of the epochs."""
    rng = np.random.default_rng(seed)
    sizes = (x.shape[1], *hidden, outputs)
    params = [rng.normal(0.0, np.sqrt(2.0 / (i + o)), (i, o)).astype(np.float32) for i, o in zip(sizes, sizes[1:])]
    params += [np.zeros(o, dtype=np.float32) for o in sizes[1:]]
    layers = len(sizes) - 1
    first, second = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    step = 0
    for epoch in range(epochs):
        if epoch in (epochs // 3, 2 * epochs // 3):
            rate /= 3
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            index = order[start:start + batch]
            activations = [x[index]]
            for k in range(layers):
                z = activations[-1] @ params[k] + params[layers + k]
                activations.append(np.tanh(z) if k < layers - 1 else z)
            delta = gradient(index, activations[-1])
            grads: list[F32] = [np.empty(0, np.float32)] * (2 * layers)
            for k in reversed(range(layers)):
                grads[k], grads[layers + k] = activations[k].T @ delta, delta.sum(axis=0)
                if k > 0:
                    delta = (delta @ params[k].T) * (1 - activations[k] ** 2)
            step += 1
            for p, g, m, v in zip(params, grads, first, second, strict=True):
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                p -= rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return Network(tuple(params[:layers]), tuple(params[layers:]))


def invert(toa: F32, gain: F32, offset: F32, albedo: F32) -> F32:
    """Surface reflectance from TOA through the inversion coefficients (broadcast against each other)."""
    y = gain * toa - offset
    return cast(F32, y / (1 + albedo * y))


def surface_gradient(cases: Cases, coefficient_mean: F32, coefficient_scale: F32) -> Gradient:
    """The gradient of the mean squared surface-reflectance error of a batch of scenes with respect to the
    network's (scaled) coefficients: the error of every pixel of a scene, through the inversion."""
    bands = cases.toa.shape[2]

    def gradient(index: NDArray[np.intp], outputs: F32) -> F32:
        gain, offset, albedo = (outputs * coefficient_scale + coefficient_mean).reshape(len(index), 3, bands)\
            .transpose(1, 0, 2)[:, :, None, :]
        toa = cases.toa[index]
        y = gain * toa - offset
        denominator = 1 + albedo * y
        error = y / denominator - cases.surface[index]
        weight = error * np.float32(2.0 / error.size) / denominator**2  # d loss / d y
        terms = np.stack([(weight * toa).sum(axis=1), -weight.sum(axis=1), -(weight * y * y).sum(axis=1)], axis=1)
        return cast(F32, terms.reshape(len(index), 3 * bands) * coefficient_scale)

    return gradient


@dataclass(frozen=True)
class Emulator:
    """An ensemble of networks for one sensor's bands, with its input and output scaling."""

    sensor_id: str
    bands: tuple[str, ...]
    context_mean: F32
    context_scale: F32
    coefficient_mean: F32
    coefficient_scale: F32
    members: tuple[Network, ...]
    spread_factor: tuple[float, ...] = ()  # per band, the ensemble's spread times this is one sigma (none: 1)
    record: dict[str, object] = field(default_factory=dict)

    @property
    def spread_factors(self) -> F32:
        return np.asarray(self.spread_factor or (1.0,) * len(self.bands), dtype=np.float32)

    def coefficients(self, context: F32) -> F32:
        """Each member's inversion coefficients (members, rows, terms, bands) for rows of ``context_names``."""
        x = ((context - self.context_mean) / self.context_scale).astype(np.float32)
        out = np.stack([member(x) * self.coefficient_scale + self.coefficient_mean for member in self.members])
        return out.reshape(len(self.members), len(context), len(TERMS), len(self.bands))

    def correct(self, toa: F32, context: F32) -> tuple[F32, F32]:
        """Surface reflectance and its one sigma (the scaled ensemble spread) of pixels (rows, pixels, bands)
        whose scene each row of ``context`` describes."""
        each = self.coefficients(context)[:, :, :, None, :]
        surface = invert(toa[None], each[:, :, 0], each[:, :, 1], each[:, :, 2])
        return surface.mean(axis=0), surface.std(axis=0) * self.spread_factors

    def save(self, path: Path) -> Path:
        arrays: dict[str, NDArray[Any]] = {"context_mean": self.context_mean, "context_scale": self.context_scale,
                                           "coefficient_mean": self.coefficient_mean,
                                           "coefficient_scale": self.coefficient_scale}
        for m, member in enumerate(self.members):
            for k, (w, b) in enumerate(zip(member.weights, member.biases, strict=True)):
                arrays[f"m{m}_w{k}"], arrays[f"m{m}_b{k}"] = w, b
        header = {"format": MODEL_FORMAT, "sensor": self.sensor_id, "bands": list(self.bands),
                  "members": len(self.members), "layers": len(self.members[0].weights),
                  "spread_factor": list(self.spread_factor), "context": list(context_names(self.bands)),
                  "record": self.record}
        arrays["header"] = np.array(json.dumps(header))
        partial = path.with_name(f".{path.name}.partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as handle:
            np.savez_compressed(handle, **cast(dict[str, Any], arrays))
        partial.replace(path)
        return path


MODEL_FORMAT = "musyq-learned-correction-2"


def load_emulator(path: Path) -> Emulator:
    try:
        with np.load(path) as data:
            header = json.loads(str(data["header"]))
            if header.get("format") != MODEL_FORMAT:
                raise ValueError(f"format {header.get('format')!r}, this musyq reads {MODEL_FORMAT!r}")
            members = tuple(Network(tuple(data[f"m{m}_w{k}"] for k in range(header["layers"])),
                                    tuple(data[f"m{m}_b{k}"] for k in range(header["layers"])))
                            for m in range(header["members"]))
            return Emulator(header["sensor"], tuple(header["bands"]), data["context_mean"], data["context_scale"],
                            data["coefficient_mean"], data["coefficient_scale"], members,
                            tuple(float(f) for f in header["spread_factor"]), header.get("record", {}))
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(path, f"not a musyq learned-correction model ({exc})") from None


@dataclass(frozen=True)
class Check:
    """How an emulator does on cases: per band RMSE and bias, per AOD bin RMSE, and the uncertainty's coverage."""

    rmse: dict[str, float]
    bias: dict[str, float]
    rmse_by_aot: dict[str, dict[str, float]]
    coverage: float  # share of |error| within one sigma (0.683 when the sigma is right)
    pixels: int


def check(emulator: Emulator, cases: Cases) -> Check:
    predicted, sigma = emulator.correct(cases.toa, cases.context)
    error = (predicted - cases.surface).reshape(-1, len(emulator.bands))
    aot = np.repeat(cases.aot550, cases.toa.shape[1])
    edges = np.linspace(*AOT_RANGE, 5)
    by_aot = {}
    for low, high in zip(edges, edges[1:]):
        inside = (aot >= low) & (aot < high)
        if inside.any():
            rms = np.sqrt(np.mean(error[inside] ** 2, axis=0))
            by_aot[f"{low:.1f}-{high:.1f}"] = {b: round(float(v), 5) for b, v in zip(emulator.bands, rms, strict=True)}
    rmse = np.sqrt(np.mean(error**2, axis=0))
    return Check({b: round(float(v), 5) for b, v in zip(emulator.bands, rmse, strict=True)},
                 {b: round(float(v), 5) for b, v in zip(emulator.bands, error.mean(axis=0), strict=True)},
                 by_aot, float(np.mean(np.abs(error) <= sigma.reshape(error.shape))), len(error))


def band_ids(sensor_id: str, names: tuple[str, ...] | None) -> tuple[str, ...]:
    """Surface band ids from ids or common names (``blue,green,red,nir``); every surface band for None."""
    table, sensor = load_table(sensor_id), get_sensor(sensor_id)
    if not names:
        return table.surface_bands
    by_name = {b.common_name: b.id for b in sensor.bands if b.id in table.surface_bands}
    chosen = tuple(by_name.get(name, name) for name in names)
    unknown = [name for name, b in zip(names, chosen, strict=True) if b not in table.surface_bands]
    if unknown:
        raise MusyqError(f"{sensor_id} has no surface band {', '.join(unknown)}; its bands: "
                         + ", ".join(f"{b.id} ({b.common_name})" for b in sensor.bands if b.id in table.surface_bands))
    return chosen


def surface_band_ids(sensor_id: str, surfaces: tuple[Path, ...]) -> tuple[str, ...]:
    """The sensor's surface bands that every surface image has (by common name)."""
    described: set[str] | None = None
    for path in surfaces:
        try:
            with rasterio.open(path) as source:
                names = {d for d in source.descriptions if d}
        except rasterio.RasterioIOError as exc:
            raise InputError(path, f"cannot read it ({exc})") from None
        described = names if described is None else described & names
    sensor = get_sensor(sensor_id)
    chosen = tuple(b for b in load_table(sensor_id).surface_bands if sensor.band(b).common_name in (described or ()))
    if not chosen:
        raise MusyqError(f"the surface images share no band with {sensor_id}'s surface bands")
    return chosen


def build(sensor_id: str, bands: tuple[str, ...] | None = None, scenes: int = 4000, members: int = 3,
          hidden: tuple[int, ...] = (32, 32), epochs: int = 80, seed: int = 1, surfaces: tuple[Path, ...] = ()
          ) -> Emulator:
    """Train an ensemble on ``scenes`` simulated scenes, half of them of the real surface reflectance of
    ``surfaces`` (musyq SR COGs) where given; its spread is scaled on a validation set of its own."""
    chosen = band_ids(sensor_id, bands) if bands or not surfaces else surface_band_ids(sensor_id, surfaces)
    images = tuple(read_surface_image(path, sensor_id, chosen) for path in surfaces)
    training = simulate_cases(sensor_id, chosen, scenes, seed, images)
    x = training.context
    context_mean, context_scale = x.mean(axis=0), x.std(axis=0) + np.float32(1e-6)
    truth = training.truth.reshape(scenes, -1)
    coefficient_mean, coefficient_scale = truth.mean(axis=0), truth.std(axis=0) + np.float32(1e-6)
    xs = ((x - context_mean) / context_scale).astype(np.float32)
    gradient = surface_gradient(training, coefficient_mean, coefficient_scale)
    nets = tuple(train_network(xs, truth.shape[1], gradient, hidden, epochs, seed + 100 * m) for m in range(members))
    emulator = Emulator(sensor_id, chosen, context_mean, context_scale, coefficient_mean, coefficient_scale, nets)
    validation = simulate_cases(sensor_id, chosen, max(scenes // 10, 20), seed + 1, images)
    predicted, spread = emulator.correct(validation.toa, validation.context)
    ratio = np.abs(predicted - validation.surface) / np.maximum(spread, 1e-6)
    # per band: the nir's error (the vapour) and the visible bands' (the aerosol) are not alike in their spread
    factors = np.quantile(ratio.reshape(-1, len(chosen)), ONE_SIGMA_COVERAGE, axis=0)
    scaled = replace(emulator, spread_factor=tuple(round(float(f), 4) for f in factors))
    record = {"scenes": scenes, "members": members, "hidden": list(hidden), "epochs": epochs, "seed": seed,
              "aot_range": list(AOT_RANGE), "surfaces": [path.name for path in surfaces],
              "validation_rmse": check(scaled, validation).rmse}
    return replace(scaled, record=record)


MODELS = Path(__file__).resolve().parent.parent / "data" / "learned"
CONTEXT_SAMPLE = 1 << 18  # clear pixels the percentiles are taken over, at most (a regular subsample beyond)


def shipped_model(sensor_id: str, available: tuple[str, ...] | None = None) -> Path:
    """The model musyq ships for a sensor (``make learned`` trains them): the one of most bands among those
    whose bands are all ``available`` (band ids; None: any)."""
    fitting = []
    for path in MODELS.glob(f"{sensor_id}.*npz"):
        with np.load(path) as data:
            bands = json.loads(str(data["header"]))["bands"]
        if available is None or set(bands) <= set(available):
            fitting.append((len(bands), path))
    if not fitting:
        known = ", ".join(sorted(p.name for p in MODELS.glob("*.npz"))) or "none"
        raise MusyqError(f"musyq ships no learned correction for {sensor_id} with these bands (it has: {known}); "
                         f"train one with `musyq learn build --sensor {sensor_id}` and pass it with --learned-model")
    return max(fitting)[1]


@dataclass(frozen=True)
class TileCorrection:
    """Surface reflectance of the emulator's bands on a tile, its one sigma, and where the context came from."""

    bands: tuple[str, ...]
    reflectance: F32
    uncertainty: F32
    context_note: str


def tile_context(toa: F32, bands: list[int], clear: NDArray[np.bool_], valid: NDArray[np.bool_]) -> tuple[F64, str]:
    """The percentiles of the ``bands`` of ``toa`` over the tile's clear land, or over all its pixels where it
    has too little of it; from a regular subsample of at most ``CONTEXT_SAMPLE`` pixels."""
    usable, note = clear, "percentiles of the tile's clear land"
    if int(clear.sum()) < PIXELS_PER_SCENE:
        usable, note = valid, "percentiles of all the tile's pixels: too little clear land"
    index = np.flatnonzero(usable.ravel())
    index = index[:: max(1, len(index) // CONTEXT_SAMPLE)]
    values = np.stack([toa[k].ravel()[index] for k in bands])
    return scene_context(values, np.ones(len(index), dtype=bool)), note


def correct_tile(
    emulator: Emulator, band_ids_of_toa: tuple[str, ...], toa: F32, geometry: tuple[F64, F64, F64],
    rows: NDArray[np.intp], cols: NDArray[np.intp], valid: NDArray[np.bool_], clear: NDArray[np.bool_],
    elevation_km: F64, water_vapour: float | None, calibration: float,
) -> TileCorrection:
    """The emulator's correction of a TOA stack (first axis ``band_ids_of_toa``): the network runs on the coarse
    nodes ``rows`` x ``cols`` (where ``geometry`` = sun zenith, view zenith, relative azimuth and
    ``elevation_km`` are given, with ``water_vapour`` where it is known), each pixel is inverted with every
    member's coefficients interpolated to it.
    The uncertainty is the scaled spread with the TOA calibration (relative sigma) through the inversion."""
    missing = [b for b in emulator.bands if b not in band_ids_of_toa]
    if missing:
        raise MusyqError(f"the learned model for {emulator.sensor_id} needs band(s) {', '.join(missing)}, "
                         "which the scene lacks")
    indexes = [band_ids_of_toa.index(b) for b in emulator.bands]
    context, note = tile_context(toa, indexes, clear & valid, valid)
    nodes = geometry_features(*geometry, elevation_km, water_vapour).reshape(-1, len(GEOMETRY))
    features = np.concatenate([nodes, np.broadcast_to(context, (len(nodes), len(context)))], axis=1)
    each = emulator.coefficients(features.astype(np.float32))
    shape = (len(rows), len(cols))
    height, width = toa.shape[1:]
    row_lower, row_upper, row_weight = _brackets(height, rows)
    col_lower, col_upper, col_weight = _brackets(width, cols)
    reflectance = np.empty((len(indexes), height, width), dtype=np.float32)
    uncertainty = np.empty_like(reflectance)
    for k, index in enumerate(indexes):
        coefficients = np.ascontiguousarray(np.moveaxis(each[:, :, :, k], 2, 0).reshape(len(TERMS), -1, *shape),
                                            dtype=np.float32)
        _invert_members(toa[index], coefficients, row_lower, row_upper, row_weight, col_lower,
                        col_upper, col_weight, float(emulator.spread_factors[k]), calibration, reflectance[k],
                        uncertainty[k])
    return TileCorrection(emulator.bands, reflectance, uncertainty, note)


def _brackets(size: int, nodes: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp], F32]:
    """For every pixel along an axis, the coarse nodes either side of it and its weight towards the upper one."""
    positions = np.arange(size)
    lower = np.clip(np.searchsorted(nodes, positions, side="right") - 1, 0, max(len(nodes) - 2, 0))
    if len(nodes) == 1:
        return lower, lower, np.zeros(size, dtype=np.float32)
    weight = (positions - nodes[lower]) / (nodes[lower + 1] - nodes[lower])
    return lower, lower + 1, weight.astype(np.float32)


# fast approximations and reordering, but NaN kept: a missing TOA pixel has to come out missing
FAST_MATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@numba.njit(parallel=True, cache=True, fastmath=FAST_MATH)
def _invert_members(
    toa: F32, coefficients: F32, row_lower: NDArray[np.intp], row_upper: NDArray[np.intp], row_weight: F32,
    col_lower: NDArray[np.intp], col_upper: NDArray[np.intp], col_weight: F32, spread_factor: float,
    calibration: float, out: F32, sigma: F32,
) -> None:  # pragma: no cover - compiled
    """Every member's inversion of each pixel: their mean into ``out``; their scaled spread with the calibration
    term (the TOA's relative sigma through the mean slope) into ``sigma``. ``coefficients`` holds gain, offset
    and albedo by member on the coarse nodes (terms x members x node rows x node columns); they are interpolated
    to a whole row first, so that the per-pixel loops run without branches or lookups (in SIMD). Sums are taken
    of the members' differences to the first one, which keeps the spread exact in single precision."""
    height, width = toa.shape
    terms, members = coefficients.shape[:2]
    one = np.float32(1)  # an integer literal would widen the single-precision loops to double
    for r in numba.prange(height):
        r0, r1, ur = row_lower[r], row_upper[r], row_weight[r]
        line = (one - ur) * coefficients[:, :, r0, :] + ur * coefficients[:, :, r1, :]
        row = np.empty((terms, members, width), dtype=np.float32)
        for t in range(terms):
            for m in range(members):
                for c in range(width):
                    lower = line[t, m, col_lower[c]]
                    row[t, m, c] = lower + col_weight[c] * (line[t, m, col_upper[c]] - lower)
        value = toa[r]
        first = np.empty(width, dtype=np.float32)
        slope = np.empty(width, dtype=np.float32)
        total = np.zeros(width, dtype=np.float32)
        square = np.zeros(width, dtype=np.float32)
        for c in range(width):
            y = row[0, 0, c] * value[c] - row[1, 0, c]
            denominator = one + row[2, 0, c] * y
            first[c] = y / denominator
            slope[c] = row[0, 0, c] / (denominator * denominator)
        for m in range(1, members):
            for c in range(width):
                y = row[0, m, c] * value[c] - row[1, m, c]
                denominator = one + row[2, m, c] * y
                difference = y / denominator - first[c]
                total[c] += difference
                square[c] += difference * difference
                slope[c] += row[0, m, c] / (denominator * denominator)
        for c in range(width):
            shift = total[c] / members
            spread = np.sqrt(max(square[c] / members - shift * shift, 0)) * spread_factor
            from_calibration = calibration * value[c] * slope[c] / members
            out[r, c] = first[c] + shift
            sigma[r, c] = np.sqrt(spread * spread + from_calibration * from_calibration)
