"""A learned cloud classifier: gradient-boosted trees on spectral and neighbourhood features.

The trees are trained (``musyq cloudmodel build``, with LightGBM) on expert-labelled Landsat 8
patches of the USGS L8 Biome set and shipped as flat node arrays; inference here is numba alone,
so no machine-learning library is needed at run time. One model is trained per group of bands a
sensor can have (visible and near infrared always, shortwave infrared, cirrus, thermal), and a
scene is classified by the richest model its bands allow. Neighbourhood windows are given in
metres, so the texture features mean the same at 10 m and at 30 m.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from musyq.core.errors import InputError, MissingBandError

Array = NDArray[np.float32]

GROUPS = ("vnir", "swir", "cirrus", "thermal")
GROUP_BANDS = {"vnir": ("blue", "green", "red", "nir"), "swir": ("swir16", "swir22"), "cirrus": ("cirrus",),
               "thermal": ()}  # thermal: the brightness temperature, passed apart from the reflectance
# the band groups a model may use, richest first; every model has the visible and near infrared
MODEL_GROUPS = (("vnir", "swir", "cirrus", "thermal"), ("vnir", "swir", "thermal"), ("vnir", "swir", "cirrus"),
                ("vnir", "swir"), ("vnir",))
WINDOWS_M = (90.0, 270.0, 810.0)
NEEDED = ("blue", "green", "red", "nir", "swir16", "swir22", "cirrus")
ROWS_PER_CHUNK = 256
# finer pixels are averaged to about the 30 m the trees learnt from (10 m Sentinel-2 bands in blocks of 3):
# at 10 m their windows would see roofs and fields the training patches never resolved
EVALUATION_M = 30.0
EPS = np.float32(1e-6)


def model_name(groups: tuple[str, ...]) -> str:
    return "-".join(groups)


def _window(metres: float, pixel_size: float) -> int:
    """An odd window of about ``metres``, at least 3 pixels."""
    return max(int(round(metres / pixel_size)) | 1, 3)


@njit(cache=True)
def _mirror(index: int, n: int) -> int:  # pragma: no cover - compiled
    """Index into ``n`` samples reflected about the edges (scipy's ``reflect``: d c b a | a b c d | d c b a)."""
    period = 2 * n
    index %= period
    return index if index < n else period - 1 - index


@njit(parallel=True, cache=True)
def _local_sums(values: Array, size: int) -> tuple[Array, Array]:  # pragma: no cover - compiled
    """Mean and standard deviation in ``size`` x ``size`` windows (reflected at the edges), as running sums.

    scipy's uniform_filter runs on one core and needs a pass for the squares apart; the windows here
    run along rows, then down columns in blocks, in parallel, in float64.
    """
    rows, cols = values.shape
    half = size // 2
    across = np.empty((2, rows, cols))
    for r in prange(rows):
        total, square = 0.0, 0.0
        for k in range(-half, half + 1):
            v = values[r, _mirror(k, cols)]
            total += v
            square += v * v
        for c in range(cols):
            across[0, r, c] = total
            across[1, r, c] = square
            v_in, v_out = values[r, _mirror(c + half + 1, cols)], values[r, _mirror(c - half, cols)]
            total += v_in - v_out
            square += v_in * v_in - v_out * v_out
    mean = np.empty((rows, cols), dtype=np.float32)
    spread = np.empty((rows, cols), dtype=np.float32)
    block = 64
    area = float(size * size)
    for b in prange((cols + block - 1) // block):
        first, last = b * block, min(b * block + block, cols)
        column_total = np.zeros(last - first)
        column_square = np.zeros(last - first)
        for k in range(-half, half + 1):
            r = _mirror(k, rows)
            column_total += across[0, r, first:last]
            column_square += across[1, r, first:last]
        for r in range(rows):
            m = column_total / area
            mean[r, first:last] = m
            spread[r, first:last] = np.sqrt(np.maximum(column_square / area - m * m, 0.0))
            r_in, r_out = _mirror(r + half + 1, rows), _mirror(r - half, rows)
            column_total += across[0, r_in, first:last] - across[0, r_out, first:last]
            column_square += across[1, r_in, first:last] - across[1, r_out, first:last]
    return mean, spread


def _local(values: Array, size: int) -> tuple[Array, Array]:
    """Mean and standard deviation in a ``size`` x ``size`` window."""
    mean, spread = _local_sums(np.ascontiguousarray(values, dtype=np.float32), size)
    return mean, spread


def feature_names(groups: tuple[str, ...]) -> tuple[str, ...]:
    names = ["blue", "green", "red", "nir", "ndvi", "ndwi", "whiteness", "hot", "blue_red", "blue_nir"]
    for w in WINDOWS_M:
        names += [f"visible_mean_{w:g}", f"visible_std_{w:g}", f"nir_std_{w:g}", f"visible_excess_{w:g}"]
    if "swir" in groups:
        names += ["swir16", "swir22", "ndsi", "ndbi", "swir16_nir", "swir22_swir16", "swir16_std_270"]
    if "cirrus" in groups:
        names += ["cirrus", "cirrus_mean_270"]
    if "thermal" in groups:
        names += ["bt", "bt_excess_270", "bt_std_270", "bt_excess_810", "bt_std_810"]
    return tuple(names)


def features(bands: Mapping[str, Array], temperature: Array | None, pixel_size: float,
             groups: tuple[str, ...], out: Array | None = None) -> Array:
    """(feature, row, col) planes, in the order of ``feature_names(groups)``; gaps must be filled.

    ``out``, when it has the right shape, is filled instead of a new array (a reused buffer is not
    faulted in again for every band of rows)."""
    blue, green, red, nir = (np.asarray(bands[n], dtype=np.float32) for n in GROUP_BANDS["vnir"])
    visible = ((blue + green + red) / np.float32(3)).astype(np.float32)
    planes = [blue, green, red, nir, (nir - red) / (nir + red + EPS), (green - nir) / (green + nir + EPS),
              (np.abs(blue - visible) + np.abs(green - visible) + np.abs(red - visible)) / (visible + EPS),
              blue - 0.5 * red, blue / (red + EPS), blue / (nir + EPS)]
    for metres in WINDOWS_M:
        size = _window(metres, pixel_size)
        mean, spread = _local(visible, size)
        planes += [mean, spread, _local(nir, size)[1], visible - mean]
    if "swir" in groups:
        swir16, swir22 = (np.asarray(bands[n], dtype=np.float32) for n in GROUP_BANDS["swir"])
        planes += [swir16, swir22, (green - swir16) / (green + swir16 + EPS), (swir16 - nir) / (swir16 + nir + EPS),
                   swir16 / (nir + EPS), swir22 / (swir16 + EPS), _local(swir16, _window(270.0, pixel_size))[1]]
    if "cirrus" in groups:
        cirrus = np.asarray(bands["cirrus"], dtype=np.float32)
        planes += [cirrus, _local(cirrus, _window(270.0, pixel_size))[0]]
    if "thermal" in groups:
        assert temperature is not None
        bt = np.asarray(temperature, dtype=np.float32)
        for metres in (270.0, 810.0):
            mean, spread = _local(bt, _window(metres, pixel_size))
            planes += [bt - mean, spread] if metres != 270.0 else [bt, bt - mean, spread]
    shape = (len(planes), *blue.shape)
    if out is None or out.shape != shape:
        out = np.empty(shape, dtype=np.float32)
    for index, plane in enumerate(planes):
        out[index] = plane
    return out


@dataclass(frozen=True)
class TreeModel:
    """A binary gradient-boosted tree ensemble as flat arrays: node ``i`` splits on ``feature[i]`` at
    ``threshold[i]`` (go left when the value is at most it, or is missing) unless ``feature[i] < 0``,
    where ``value[i]`` is a leaf's score; ``roots`` are the trees' first nodes. The cloud probability
    is the logistic of the summed leaf scores."""

    groups: tuple[str, ...]
    feature: NDArray[np.int32]
    threshold: NDArray[np.float32]
    left: NDArray[np.int32]
    right: NDArray[np.int32]
    value: NDArray[np.float32]
    roots: NDArray[np.int32]
    info: dict[str, object]

    @property
    def name(self) -> str:
        return model_name(self.groups)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(partial, feature=self.feature, threshold=self.threshold, left=self.left,
                            right=self.right, value=self.value, roots=self.roots,
                            groups=np.array(self.groups), info=np.array(json.dumps(self.info)))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> TreeModel:
        try:
            with np.load(path, allow_pickle=False) as data:
                groups = tuple(str(g) for g in data["groups"])
                model = cls(groups, data["feature"].astype(np.int32), data["threshold"].astype(np.float32),
                            data["left"].astype(np.int32), data["right"].astype(np.int32),
                            data["value"].astype(np.float32), data["roots"].astype(np.int32),
                            json.loads(str(data["info"])))
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(path, f"not a musyq cloud model ({exc})") from None
        if int(model.feature.max(initial=-1)) >= len(feature_names(groups)):
            raise InputError(path, "the model uses features this musyq does not compute")
        return model


PIXELS_PER_BLOCK = 512


@njit(parallel=True, cache=True)
def _predict(planes: Array, feature: NDArray[np.int32], threshold: NDArray[np.float32], left: NDArray[np.int32],
             right: NDArray[np.int32], value: NDArray[np.float32], roots: NDArray[np.int32],
             out: Array) -> None:  # pragma: no cover - compiled
    """Sum every tree's leaf score per pixel of (feature, pixel) ``planes``, then the logistic.

    Each block of pixels is first gathered pixel-major, so that walking a tree touches one or two
    cache lines per pixel.
    """
    count = planes.shape[1]
    for b in prange((count + PIXELS_PER_BLOCK - 1) // PIXELS_PER_BLOCK):
        first, last = b * PIXELS_PER_BLOCK, min(b * PIXELS_PER_BLOCK + PIXELS_PER_BLOCK, count)
        pixels = np.ascontiguousarray(planes[:, first:last].T)
        for p in range(last - first):
            row = pixels[p]
            score = 0.0
            for t in range(roots.size):
                node = roots[t]
                while feature[node] >= 0:
                    x = row[feature[node]]
                    node = left[node] if x <= threshold[node] or x != x else right[node]
                score += value[node]
            out[first + p] = 1.0 / (1.0 + np.exp(-score))


def predict(model: TreeModel, planes: Array) -> Array:
    """Cloud probability (0-1) of each pixel of (feature, ...) planes."""
    shape = planes.shape[1:]
    flat = planes.reshape(planes.shape[0], -1)
    out = np.empty(flat.shape[1], dtype=np.float32)
    _predict(flat, model.feature, model.threshold, model.left, model.right, model.value, model.roots, out)
    return out.reshape(shape)


def _filled(values: Array, valid: NDArray[np.bool_]) -> Array:
    """Gaps given the median of the valid pixels, so that windows over an edge of the data stay finite."""
    if valid.all():
        return values
    known = values[valid]
    return np.where(valid, values, np.median(known) if known.size else 0.0).astype(np.float32)


def model_folder() -> Path:
    """Where the package's own models are (an installed package keeps its data as files)."""
    return Path(str(resources.files("musyq") / "data" / "cloudmodel"))


@cache
def shipped_model(groups: tuple[str, ...]) -> TreeModel:
    return TreeModel.load(model_folder() / f"{model_name(groups)}.npz")


def groups_available(bands: Mapping[str, Array], temperature: Array | None) -> tuple[str, ...]:
    """The richest band groups with a model that ``bands`` (and a brightness temperature) allow."""
    have = {"vnir": all(n in bands for n in GROUP_BANDS["vnir"]), "swir": all(n in bands for n in GROUP_BANDS["swir"]),
            "cirrus": "cirrus" in bands, "thermal": temperature is not None}
    for groups in MODEL_GROUPS:
        if all(have[g] for g in groups):
            return groups
    raise MissingBandError("input", "the learned cloud mask needs blue, green, red and nir")


def _coarsened(values: Array, factor: int) -> Array:
    """Block means of ``factor`` x ``factor`` pixels (the last blocks padded with the edge pixels)."""
    if factor == 1:
        return values
    rows, cols = -(-values.shape[0] // factor) * factor, -(-values.shape[1] // factor) * factor
    padded = np.pad(values, ((0, rows - values.shape[0]), (0, cols - values.shape[1])), mode="edge")
    blocks = padded.reshape(rows // factor, factor, cols // factor, factor)
    return np.asarray(blocks.mean(axis=(1, 3), dtype=np.float32), dtype=np.float32)


def _refined(values: Array, factor: int, shape: tuple[int, int]) -> Array:
    """Bilinear interpolation of block values back onto the fine pixels (block centres as nodes)."""
    if factor == 1:
        return values

    def axis(n: int, blocks: int) -> tuple[NDArray[np.intp], Array]:
        position = np.clip((np.arange(n) + 0.5) / factor - 0.5, 0, blocks - 1)
        low = np.minimum(np.floor(position).astype(np.intp), max(blocks - 2, 0))
        return low, (position - low).astype(np.float32)
    r, wr = axis(shape[0], values.shape[0])
    c, wc = axis(shape[1], values.shape[1])
    r1, c1 = np.minimum(r + 1, values.shape[0] - 1), np.minimum(c + 1, values.shape[1] - 1)
    top = values[r][:, c] * (1 - wc) + values[r][:, c1] * wc
    bottom = values[r1][:, c] * (1 - wc) + values[r1][:, c1] * wc
    return np.asarray(top * (1 - wr[:, None]) + bottom * wr[:, None], dtype=np.float32)


def cloud_probability(bands: Mapping[str, Array], temperature: Array | None, valid: NDArray[np.bool_],
                      pixel_size: float, model: TreeModel | None = None) -> Array:
    """Cloud probability (0-1) per pixel from the richest model the bands allow (or ``model``).

    The trees run on blocks of about ``EVALUATION_M`` (block means of whole pixels), whose probability is
    interpolated back onto the pixels, in bands of rows with a halo as wide as the largest window, so
    memory stays bounded.
    """
    groups = groups_available(bands, temperature) if model is None else model.groups
    model = shipped_model(groups) if model is None else model
    factor = max(int(EVALUATION_M // pixel_size), 1)
    names = [n for g in groups for n in GROUP_BANDS[g]]
    filled = {n: _coarsened(_filled(np.asarray(bands[n], dtype=np.float32), valid), factor) for n in names}
    bt = None if "thermal" not in groups or temperature is None else _coarsened(_filled(temperature, valid), factor)
    size = pixel_size * factor
    halo = _window(max(WINDOWS_M), size)
    rows, cols = next(iter(filled.values())).shape
    coarse = np.zeros((rows, cols), dtype=np.float32)
    buffer = None
    for start in range(0, rows, ROWS_PER_CHUNK):
        stop = min(start + ROWS_PER_CHUNK, rows)
        low, high = max(start - halo, 0), min(stop + halo, rows)
        part = {n: v[low:high] for n, v in filled.items()}
        buffer = features(part, None if bt is None else bt[low:high], size, groups, buffer)
        coarse[start:stop] = predict(model, np.ascontiguousarray(buffer[:, start - low:stop - low]))
    out = _refined(coarse, factor, (int(valid.shape[0]), int(valid.shape[1])))
    out[~valid] = 0.0
    return out
