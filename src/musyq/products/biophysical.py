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
from numpy.typing import NDArray

from musyq.core.errors import MusyqError

VARIABLES = ("LAI", "FAPAR", "FCOVER")
# the networks' reflectance inputs (Sentinel-2 B03, B04, B05, B06, B07, B8A, B11, B12) by harmonized name
INPUT_BANDS = ("green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
INPUT_OUT_OF_DOMAIN, OUTPUT_BELOW, OUTPUT_ABOVE = 1, 2, 4  # quality bits


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
    tolerance: float  # negative: outputs this far below the valid range are held to it, farther flagged
    valid_low: float
    valid_high: float


class Biophysical(NamedTuple):
    value: NDArray[np.float64]
    sigma: NDArray[np.float64] | None
    quality: NDArray[np.uint8]  # INPUT_OUT_OF_DOMAIN | OUTPUT_BELOW | OUTPUT_ABOVE


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
                   float(out[0]), float(out[1]), domain[0], domain[1], float(extreme[0]), float(extreme[1]),
                   float(extreme[2]))


def biophysical(variable: str, bands: Mapping[str, NDArray[np.floating]], view_zenith: NDArray[np.floating],
                sun_zenith: NDArray[np.floating], relative_azimuth: NDArray[np.floating],
                uncertainty: Mapping[str, NDArray[np.floating]] | None = None) -> Biophysical:
    """``variable`` from surface reflectance (harmonized names) and angles in degrees (relative azimuth: sun
    minus view); with ``uncertainty`` (per band, one sigma) also the value's sigma through the Jacobian."""
    net = network(variable)
    missing = [b for b in INPUT_BANDS if b not in bands]
    if missing:
        raise MusyqError(f"{variable} needs {', '.join(missing)}, which the input lacks")
    rho = np.stack([np.asarray(bands[b], dtype=np.float64) for b in INPUT_BANDS])
    shape = rho.shape[1:]
    angles = np.stack([np.cos(np.radians(np.broadcast_to(a, shape))) for a in (view_zenith, sun_zenith,
                                                                                  relative_azimuth)])
    x = np.concatenate([rho, angles]).reshape(11, -1)
    scale = 2.0 / (net.high - net.low)
    normalised = (x - net.low[:, None]) * scale[:, None] - 1.0
    hidden = np.tanh(net.weights1 @ normalised + net.bias1[:, None])  # tansig is tanh
    output = net.weights2 @ hidden + net.bias2
    span = 0.5 * (net.out_high - net.out_low)
    value = (output + 1.0) * span + net.out_low
    quality = np.zeros(value.shape, dtype=np.uint8)
    outside = np.any((rho.reshape(8, -1) < net.domain_low[:, None]) | (rho.reshape(8, -1) > net.domain_high[:, None]),
                     axis=0)
    quality[outside] |= INPUT_OUT_OF_DOMAIN
    # SNAP's extreme cases, as its test cases apply them: a little below the range (within the negative
    # tolerance) is held to it, farther below is flagged; anything above it is flagged
    quality[value < net.valid_low + net.tolerance] |= OUTPUT_BELOW
    quality[value > net.valid_high] |= OUTPUT_ABOVE
    value = np.clip(value, net.valid_low, net.valid_high)
    sigma = None
    if uncertainty is not None:
        absent = [b for b in INPUT_BANDS if b not in uncertainty]
        if absent:
            raise MusyqError(f"no uncertainty for {', '.join(absent)}, which {variable} needs")
        # d value / d rho_k = span * sum_j w2_j (1 - h_j^2) w1_jk scale_k
        slope = (net.weights2[:, None] * (1.0 - hidden**2))  # (5, n)
        gradient = span * (net.weights1[:, :8].T @ slope) * scale[:8, None]  # (8, n)
        spread = np.stack([np.broadcast_to(np.asarray(uncertainty[b], dtype=np.float64), shape)
                           for b in INPUT_BANDS]).reshape(8, -1)
        sigma = np.sqrt(np.sum((gradient * spread) ** 2, axis=0)).reshape(shape)
    return Biophysical(value.reshape(shape), sigma, quality.reshape(shape))
