"""LAI, FAPAR and FCOVER by the Sentinel-2 biophysical networks of ESA's SNAP S2 Toolbox (Weiss & Baret, L2B
ATBD), version 2.1, shipped as data; each value with its uncertainty through the network's Jacobian and SNAP's
input- and output-domain flags.

Evaluated here rather than through SNAP: SNAP is a Java desktop application, and the network is eleven inputs,
five tansig neurons and one linear output.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import NamedTuple

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from musyq.core.errors import MusyqError
from musyq.products.names import VARIABLES

# the networks' reflectance inputs (Sentinel-2 B03, B04, B05, B06, B07, B8A, B11, B12) by harmonized name
INPUT_BANDS = ("green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
INPUT_OUT_OF_DOMAIN, OUTPUT_BELOW, OUTPUT_ABOVE = 1, 2, 4  # quality bits


GRID_CELLS = 10  # the definition-domain grid splits each band's training range into ten cells


class Network(NamedTuple):
    low: NDArray[np.float64]  # (11,) input normalisation
    high: NDArray[np.float64]
    weights1: NDArray[np.float64]  # (5, 11)
    bias1: NDArray[np.float64]  # (5,)
    weights2: NDArray[np.float64]  # (5,)
    bias2: float
    out_low: float
    out_high: float
    domain_low: NDArray[np.float64]  # (8,) reflectance bounds of the training set
    domain_high: NDArray[np.float64]
    domain_cells: NDArray[np.uint8]  # bit set over the 10^8 grid cells: those the training set filled
    tolerance: float  # negative: outputs this far below the valid range are held to it, farther flagged
    valid_low: float
    valid_high: float


class Biophysical(NamedTuple):
    value: NDArray[np.floating]
    sigma: NDArray[np.floating] | None
    quality: NDArray[np.uint8]  # INPUT_OUT_OF_DOMAIN | OUTPUT_BELOW | OUTPUT_ABOVE


def _cell_bits(cells: NDArray[np.int64]) -> NDArray[np.uint8]:
    """The filled grid cells as a bit set (12.5 MB) keyed by the eight 0-based band indices as decimal digits:
    one lookup per pixel instead of a search through the 11 039 cells."""
    keys = (cells.astype(np.int64) - 1) @ (GRID_CELLS ** np.arange(cells.shape[1], dtype=np.int64))
    bits = np.zeros(GRID_CELLS ** cells.shape[1] // 8 + 1, dtype=np.uint8)
    np.bitwise_or.at(bits, keys >> 3, (1 << (keys & 7)).astype(np.uint8))
    return bits


@cache
def network(variable: str) -> Network:
    if variable not in VARIABLES:
        raise MusyqError(f"unknown biophysical variable {variable!r}; choose one of {', '.join(VARIABLES)}")
    home = files("musyq") / "data" / "snap-biophysical" / "2_1" / variable

    def table(name: str) -> NDArray[np.float64]:
        text = (home / f"{variable}_{name}").read_text()
        return np.array([[float(v) for v in line.split(",")] for line in text.split() if line.strip()])

    norm = table("Normalisation")
    out = table("Denormalisation")[0]
    domain = table("DefinitionDomain_MinMax")
    extreme = table("ExtremeCases")[0]
    return Network(norm[:, 0], norm[:, 1], table("Weights_Layer1_Neurons"), table("Weights_Layer1_Bias").ravel(),
                   table("Weights_Layer2_Neurons").ravel(), float(table("Weights_Layer2_Bias").ravel()[0]),
                   float(out[0]), float(out[1]), domain[0], domain[1],
                   _cell_bits(table("DefinitionDomain_Grid").astype(np.int64)), float(extreme[0]), float(extreme[1]),
                   float(extreme[2]))


BLOCK = 4096  # pixels per parallel task: each task allocates its scratch once


# fast approximations and reordering, but NaN and infinity kept: the kernel tests for missing bands
FAST_MATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(parallel=True, cache=True, fastmath=FAST_MATH)
def _evaluate(rho: NDArray[np.floating], spread: NDArray[np.floating], cosines: NDArray[np.float64],
              low: NDArray[np.float64], scale: NDArray[np.float64], weights1: NDArray[np.float64],
              bias1: NDArray[np.float64], weights2: NDArray[np.float64], bias2: float, span: float, out_low: float,
              domain_low: NDArray[np.float64], domain_high: NDArray[np.float64], cells: NDArray[np.uint8],
              floor: float, valid_low: float, valid_high: float, value: NDArray[np.floating],
              sigma: NDArray[np.floating], quality: NDArray[np.uint8]) -> None:  # pragma: no cover - compiled
    """The network, its Jacobian sigma and SNAP's domain flags, one pixel at a time (no (11, n) temporaries)."""
    n = rho.shape[1]
    angle_step = 1 if cosines.shape[1] > 1 else 0
    with_sigma = spread.shape[1] == n
    hidden = weights1.shape[0]
    for block in prange((n + BLOCK - 1) // BLOCK):
        x = np.empty(11)
        gradient = np.empty(8)
        for i in range(block * BLOCK, min(n, (block + 1) * BLOCK)):
            finite = True
            for k in range(8):
                x[k] = rho[k, i]
                finite &= np.isfinite(x[k])
            if not finite:
                value[i] = np.nan
                sigma[i] = np.nan
                quality[i] = 0
                continue
            for k in range(3):
                x[8 + k] = cosines[k, i * angle_step]
            flag = 0
            key = 0
            power = 1
            for k in range(8):
                if x[k] < domain_low[k] or x[k] > domain_high[k]:
                    flag = INPUT_OUT_OF_DOMAIN
                cell = int(np.floor(GRID_CELLS * (x[k] - domain_low[k]) / (domain_high[k] - domain_low[k])))
                key += min(max(cell, 0), GRID_CELLS - 1) * power  # the upper bound itself is in the last cell
                power *= GRID_CELLS
            if flag == 0 and not (cells[key >> 3] >> (key & 7)) & 1:
                flag = INPUT_OUT_OF_DOMAIN
            for k in range(11):
                x[k] = (x[k] - low[k]) * scale[k] - 1.0
            gradient[:] = 0.0
            output = bias2
            for j in range(hidden):
                total = bias1[j]
                for k in range(11):
                    total += weights1[j, k] * x[k]
                h = 1.0 - 2.0 / (1.0 + np.exp(2.0 * total))  # tansig, = tanh, at half the cost of np.tanh
                output += weights2[j] * h
                slope = weights2[j] * (1.0 - h * h)
                for k in range(8):
                    gradient[k] += slope * weights1[j, k]
            result = (output + 1.0) * span + out_low
            # SNAP's extreme cases, as its test cases apply them: a little below the range (within the negative
            # tolerance) is held to it, farther below is flagged; anything above it is flagged
            if result < floor:
                flag |= OUTPUT_BELOW
            if result > valid_high:
                flag |= OUTPUT_ABOVE
            value[i] = min(max(result, valid_low), valid_high)
            quality[i] = flag
            if with_sigma:
                variance = 0.0
                for k in range(8):
                    variance += (span * gradient[k] * scale[k] * spread[k, i]) ** 2
                sigma[i] = np.sqrt(variance)


def biophysical(variable: str, bands: Mapping[str, NDArray[np.floating]], view_zenith: NDArray[np.floating] | float,
                sun_zenith: NDArray[np.floating] | float, relative_azimuth: NDArray[np.floating] | float,
                uncertainty: Mapping[str, NDArray[np.floating]] | None = None) -> Biophysical:
    """``variable`` from surface reflectance (harmonized names) and angles in degrees (relative azimuth: sun
    minus view; scalars or arrays of the bands' shape); with ``uncertainty`` (per band, one sigma) also the
    value's sigma through the Jacobian. Pixels with a missing band are NaN."""
    net = network(variable)
    missing = [b for b in INPUT_BANDS if b not in bands]
    if missing:
        raise MusyqError(f"{variable} needs {', '.join(missing)}, which the input lacks")
    shape = np.shape(bands[INPUT_BANDS[0]])
    # float32 reflectance (as read from the ARD) stays float32; float64 input is evaluated and returned in float64
    dtype = np.float64 if any(np.asarray(bands[b]).dtype == np.float64 for b in INPUT_BANDS) else np.float32
    rho = np.stack([np.asarray(bands[b], dtype=dtype).reshape(-1) for b in INPUT_BANDS])
    angles = [np.asarray(a, dtype=np.float64) for a in (view_zenith, sun_zenith, relative_azimuth)]
    if all(a.size == 1 for a in angles):
        cosines = np.cos(np.radians(np.array([a.reshape(-1)[:1] for a in angles]).reshape(3, 1)))
    else:
        cosines = np.stack([np.cos(np.radians(np.broadcast_to(a, shape))).reshape(-1) for a in angles])
    spread = np.zeros((8, 0), dtype=dtype)
    if uncertainty is not None:
        absent = [b for b in INPUT_BANDS if b not in uncertainty]
        if absent:
            raise MusyqError(f"no uncertainty for {', '.join(absent)}, which {variable} needs")
        spread = np.stack([np.broadcast_to(np.asarray(uncertainty[b], dtype=dtype), shape).reshape(-1)
                           for b in INPUT_BANDS])
    count = rho.shape[1]
    value = np.empty(count, dtype=dtype)
    sigma = np.empty(count, dtype=dtype)
    quality = np.empty(count, dtype=np.uint8)
    scale = 2.0 / (net.high - net.low)
    _evaluate(rho, spread, cosines, net.low, scale, net.weights1, net.bias1, net.weights2, net.bias2,
              0.5 * (net.out_high - net.out_low), net.out_low, net.domain_low, net.domain_high, net.domain_cells,
              net.valid_low + net.tolerance, net.valid_low, net.valid_high, value, sigma, quality)
    return Biophysical(value.reshape(shape), sigma.reshape(shape) if uncertainty is not None else None,
                       quality.reshape(shape))
