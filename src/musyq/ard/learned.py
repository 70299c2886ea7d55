"""A learned atmospheric correction: a small network taught by musyq's own physics.

The physical correction needs an aerosol retrieval, which needs bands (2.2 um) or a surface prior that small
missions lack. The emulator learns the whole step from top-of-atmosphere to surface reflectance instead, from
cases the 6S tables make: surfaces of the spectral library (PROSAIL canopies, soils, waters, and mixtures of
them) seen through random atmospheres (AOD 0-0.8, water vapour, ozone, surface height) in random sun and view
geometries, so it can be taught for any sensor musyq has SRFs and tables for.

What a pixel's own TOA cannot tell, the atmosphere, comes from its scene: the 1st, 10th and 50th percentiles
of each band's TOA over the scene's clear land (dark objects carry the path reflectance), together with the
sun and view angles and the surface pressure. The network predicts the correction (surface minus TOA) per
band. Several members trained from different starts make an ensemble; their spread, scaled on held-out cases
so that it covers the errors as often as one sigma should, is the per-pixel uncertainty.

The network is a plain multilayer perceptron trained with Adam by the numpy code here (a few thousand
weights: no framework is worth its install for that); inference is a few matrix products per chunk of pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from musyq.ard.atmcor import Atmosphere, coefficients, pressure_ratio, toa_reflectance
from musyq.ard.bandpass import generate_library
from musyq.ard.lut import load_table
from musyq.core.errors import InputError, MusyqError
from musyq.core.sensors import get_sensor, reflectance_bands

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

PERCENTILES = (1.0, 10.0, 50.0)  # of each band's TOA over the scene's clear land: the scene context
AOT_RANGE = (0.0, 0.8)
SUN_ZENITH_RANGE = (15.0, 70.0)
WATER_VAPOUR_RANGE = (0.3, 4.0)
OZONE_RANGE = (0.25, 0.4)
ELEVATION_KM_RANGE = (0.0, 2.0)
MAX_WATER_SHARE = 0.2
MIXED_SHARE = 0.5  # of a scene's pixels, mixtures of two library surfaces (field edges, sparse canopies)
PIXELS_PER_SCENE = 256
CHUNK_PIXELS = 1 << 18
ONE_SIGMA_COVERAGE = 0.6827


@dataclass(frozen=True)
class Cases:
    """Simulated pixels: network inputs (the TOA first), the true surface, and each pixel's AOD."""

    features: F32
    surface: F32
    aot550: F32

    @property
    def corrections(self) -> F32:
        """What the networks learn: surface minus TOA."""
        return self.surface - self.features[:, : self.surface.shape[1]]


def feature_names(bands: tuple[str, ...]) -> tuple[str, ...]:
    return (*(f"toa_{b}" for b in bands), "cos_sun_zenith", "cos_view_zenith", "cos_relative_azimuth",
            "pressure_ratio", *(f"p{p:g}_{b}" for p in PERCENTILES for b in bands))


def scene_context(toa: F32 | F64, clear: NDArray[np.bool_]) -> F64:
    """The percentiles of each band's TOA (first axis bands) over the clear pixels, band by band."""
    values = toa.reshape(toa.shape[0], -1)[:, clear.ravel()]
    if values.shape[1] == 0:
        raise MusyqError("no clear land to take the scene's context from: the learned correction needs some")
    return np.asarray(np.percentile(values, PERCENTILES, axis=1), dtype=np.float64).ravel()


def simulate_cases(sensor_id: str, bands: tuple[str, ...], scenes: int, seed: int) -> Cases:
    """``scenes`` simulated scenes of ``PIXELS_PER_SCENE`` pixels each, from a library drawn with ``seed``."""
    table = load_table(sensor_id)
    rng = np.random.default_rng(seed)
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
    surface = np.where(mixed[..., None], share * picks + (1 - share) * others, picks)

    column = (scenes, 1)
    aot = rng.uniform(*AOT_RANGE, column)
    elevation = rng.uniform(*ELEVATION_KM_RANGE, column)
    atmosphere = Atmosphere(aot, rng.uniform(*WATER_VAPOUR_RANGE, column), rng.uniform(*OZONE_RANGE, column),
                            "continental", elevation)
    sun, view = rng.uniform(*SUN_ZENITH_RANGE, column), rng.uniform(0.0, _max_view_zenith(sensor_id), column)
    azimuth = rng.uniform(0.0, 180.0, column)
    toa = np.stack([toa_reflectance(surface[..., k], coefficients(table, band, atmosphere, sun, view, azimuth))
                    for k, band in enumerate(bands)], axis=-1)  # (scenes, pixels, bands)
    context = np.stack([scene_context(toa[s].T, ~is_water[s]) for s in range(scenes)])
    geometry = np.column_stack([np.cos(np.radians(sun)), np.cos(np.radians(view)), np.cos(np.radians(azimuth)),
                                pressure_ratio(elevation)])
    features = np.concatenate([toa, np.repeat(np.concatenate([geometry, context], axis=1)[:, None], n, axis=1)],
                              axis=-1)
    return Cases(features.reshape(scenes * n, -1).astype(np.float32),
                 surface.reshape(scenes * n, -1).astype(np.float32),
                 np.repeat(aot[:, 0], n).astype(np.float32))


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


def train_network(x: F32, y: F32, hidden: tuple[int, ...], epochs: int, seed: int,
                  batch: int = 256, rate: float = 2e-3) -> Network:
    """Least squares by Adam on minibatches, the rate cut threefold at a third and two thirds of the epochs."""
    rng = np.random.default_rng(seed)
    sizes = (x.shape[1], *hidden, y.shape[1])
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
            outputs = [x[index]]
            for k in range(layers):
                z = outputs[-1] @ params[k] + params[layers + k]
                outputs.append(np.tanh(z) if k < layers - 1 else z)
            delta = (outputs[-1] - y[index]) * np.float32(2.0 / len(index))
            grads: list[F32] = [np.empty(0, np.float32)] * (2 * layers)
            for k in reversed(range(layers)):
                grads[k], grads[layers + k] = outputs[k].T @ delta, delta.sum(axis=0)
                if k > 0:
                    delta = (delta @ params[k].T) * (1 - outputs[k] ** 2)
            step += 1
            for p, g, m, v in zip(params, grads, first, second, strict=True):
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                p -= rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return Network(tuple(params[:layers]), tuple(params[layers:]))


@dataclass(frozen=True)
class Emulator:
    """An ensemble of networks for one sensor's bands, with its input and output scaling."""

    sensor_id: str
    bands: tuple[str, ...]
    feature_mean: F32
    feature_scale: F32
    correction_mean: F32
    correction_scale: F32
    members: tuple[Network, ...]
    spread_factor: float = 1.0  # the ensemble spread times this is one sigma
    record: dict[str, object] = field(default_factory=dict)

    def predict(self, features: F32) -> tuple[F32, F32]:
        """Surface reflectance and its one sigma for rows of ``feature_names(bands)``."""
        mean = np.zeros((len(features), len(self.bands)), dtype=np.float32)
        square = np.zeros_like(mean)
        for start in range(0, len(features), CHUNK_PIXELS):
            part = slice(start, start + CHUNK_PIXELS)
            x = (features[part] - self.feature_mean) / self.feature_scale
            for member in self.members:
                out = member(x) * self.correction_scale + self.correction_mean
                mean[part] += out
                square[part] += out * out
        count = np.float32(len(self.members))
        mean /= count
        spread = np.sqrt(np.maximum(square / count - mean * mean, 0.0)) * np.float32(self.spread_factor)
        return mean + features[:, : len(self.bands)], spread

    def save(self, path: Path) -> Path:
        arrays: dict[str, NDArray[Any]] = {"feature_mean": self.feature_mean,
                                           "feature_scale": self.feature_scale,
                                           "correction_mean": self.correction_mean,
                                           "correction_scale": self.correction_scale}
        for m, member in enumerate(self.members):
            for k, (w, b) in enumerate(zip(member.weights, member.biases, strict=True)):
                arrays[f"m{m}_w{k}"], arrays[f"m{m}_b{k}"] = w, b
        header = {"sensor": self.sensor_id, "bands": list(self.bands), "members": len(self.members),
                  "layers": len(self.members[0].weights), "spread_factor": self.spread_factor,
                  "features": list(feature_names(self.bands)), "record": self.record}
        arrays["header"] = np.array(json.dumps(header))
        partial = path.with_name(f".{path.name}.partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as handle:
            np.savez_compressed(handle, **cast(dict[str, Any], arrays))
        partial.replace(path)
        return path


def load_emulator(path: Path) -> Emulator:
    try:
        with np.load(path) as data:
            header = json.loads(str(data["header"]))
            members = tuple(Network(tuple(data[f"m{m}_w{k}"] for k in range(header["layers"])),
                                    tuple(data[f"m{m}_b{k}"] for k in range(header["layers"])))
                            for m in range(header["members"]))
            return Emulator(header["sensor"], tuple(header["bands"]), data["feature_mean"], data["feature_scale"],
                            data["correction_mean"], data["correction_scale"], members,
                            float(header["spread_factor"]), header.get("record", {}))
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
    predicted, sigma = emulator.predict(cases.features)
    error = predicted - cases.surface
    edges = np.linspace(*AOT_RANGE, 5)
    by_aot = {}
    for low, high in zip(edges, edges[1:]):
        inside = (cases.aot550 >= low) & (cases.aot550 < high)
        if inside.any():
            rms = np.sqrt(np.mean(error[inside] ** 2, axis=0))
            by_aot[f"{low:.1f}-{high:.1f}"] = {b: round(float(v), 5) for b, v in zip(emulator.bands, rms, strict=True)}
    rmse = np.sqrt(np.mean(error**2, axis=0))
    return Check({b: round(float(v), 5) for b, v in zip(emulator.bands, rmse, strict=True)},
                 {b: round(float(v), 5) for b, v in zip(emulator.bands, error.mean(axis=0), strict=True)},
                 by_aot, float(np.mean(np.abs(error) <= sigma)), len(error))


def build(sensor_id: str, bands: tuple[str, ...] | None = None, scenes: int = 2000, members: int = 3,
          hidden: tuple[int, ...] = (32, 32), epochs: int = 30, seed: int = 1) -> Emulator:
    """Train an ensemble on ``scenes`` simulated scenes; its spread is scaled on a validation set of its own."""
    table = load_table(sensor_id)
    chosen = bands or table.surface_bands
    unknown = [b for b in chosen if b not in table.surface_bands]
    if unknown:
        raise MusyqError(f"{sensor_id} has no surface band {', '.join(unknown)}; "
                         f"its bands: {', '.join(table.surface_bands)}")
    training = simulate_cases(sensor_id, chosen, scenes, seed)
    x, y = training.features, training.corrections
    feature_mean, feature_scale = x.mean(axis=0), x.std(axis=0) + np.float32(1e-6)
    correction_mean, correction_scale = y.mean(axis=0), y.std(axis=0) + np.float32(1e-6)
    xs, ys = (x - feature_mean) / feature_scale, (y - correction_mean) / correction_scale
    nets = tuple(train_network(xs, ys, hidden, epochs, seed + 100 * m) for m in range(members))
    emulator = Emulator(sensor_id, chosen, feature_mean, feature_scale, correction_mean, correction_scale, nets)
    validation = simulate_cases(sensor_id, chosen, max(scenes // 10, 20), seed + 1)
    predicted, spread = emulator.predict(validation.features)
    ratio = np.abs(predicted - validation.surface) / np.maximum(spread, 1e-6)
    scaled = replace(emulator, spread_factor=float(np.quantile(ratio, ONE_SIGMA_COVERAGE)))
    record = {"scenes": scenes, "members": members, "hidden": list(hidden), "epochs": epochs, "seed": seed,
              "aot_range": list(AOT_RANGE), "validation_rmse": check(scaled, validation).rmse}
    return replace(scaled, record=record)
