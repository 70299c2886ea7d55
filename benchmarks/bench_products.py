"""Time products with their uncertainty on a full 3660 x 3660 tile (30 m) against numpy floors of the same run.

The reflectance and its SRUNC are real: the bundled Sentinel-2 19UDP sample is made into ARD (900 m, 122 x 122
pixels, NBAR, no bandpass), and its pixels are repeated 30 x 30 times into a full tile. Timed: SNAP LAI with its
Jacobian sigma and domain flags (musyq's compiled network) against the same network in vectorized numpy
((11, n) matrices, the usual port); NDVI, EVI and NBR with complex-step sigma against numpy NDVI without sigma.

    python benchmarks/bench_products.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from musyq.products.biophysical import INPUT_BANDS, biophysical, network
from musyq.products.indices import compute_index
from musyq.timeseries.cube import HARMONIZED

SAMPLE = Path(__file__).resolve().parents[1] / "src/musyq/data/samples/S2A_MSIL1C_20170729_T19UDP_900m"
REPEAT = 30
ITEM = "S2A_MSI.900m.2017210153557.19UDP.001"


def _layer(folder: Path, name: str) -> dict[str, np.ndarray]:
    with rasterio.open(folder / f"{ITEM}.{name}.tif") as dataset:
        stored, names = dataset.read(), dataset.descriptions
    out = {}
    for harmonized, sources in HARMONIZED.items():
        source = next((s for s in sources if s in names), None)
        if source is not None:
            values = stored[names.index(source)].astype(np.float32) / np.float32(1e4)
            values[stored[names.index(source)] == 0] = np.nan
            out[harmonized] = np.tile(values, (REPEAT, REPEAT))[:3660, :3660].copy()
    return out


def numpy_lai(bands: dict[str, np.ndarray], sigma: dict[str, np.ndarray], sun: float) -> tuple[np.ndarray, ...]:
    """The floor: SNAP's network as ports write it, with (11, n) matrices and the Jacobian by the chain rule."""
    net = network("LAI")
    rho = np.stack([bands[b].reshape(-1).astype(np.float64) for b in INPUT_BANDS])
    n = rho.shape[1]
    angles = np.cos(np.radians(np.array([0.0, sun, 0.0])))[:, None] * np.ones((3, n))
    x = np.concatenate([rho, angles])
    scale = 2.0 / (net.high - net.low)
    hidden = np.tanh(net.weights1 @ ((x - net.low[:, None]) * scale[:, None] - 1) + net.bias1[:, None])
    span = 0.5 * (net.out_high - net.out_low)
    value = (net.weights2 @ hidden + net.bias2 + 1) * span + net.out_low
    gradient = span * (net.weights1[:, :8].T @ (net.weights2[:, None] * (1 - hidden**2))) * scale[:8, None]
    spread = np.stack([sigma[b].reshape(-1) for b in INPUT_BANDS])
    return value, np.sqrt(np.sum((gradient * spread) ** 2, axis=0))


def timed(label: str, call, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    call()  # warm up (compilation, caches)
    best = min(_once(call) for _ in range(repeat))
    print(f"{label:42s} {best:7.3f} s")
    return best


def _once(call) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        subprocess.run([sys.executable, "-m", "musyq", "ard", str(SAMPLE), "--out", str(out), "--resolution", "900",
                        "--tile", "19UDP", "--bandpass-to", "none"], check=True, capture_output=True)
        folder = out / "19UDP" / ITEM
        bands, sigma = _layer(folder, "SR"), _layer(folder, "SRUNC")
        sun = json.loads((folder / f"{ITEM}.json").read_text())["properties"]["musyq:nbar_solar_zenith"]
    pixels = bands["red"].size
    print(f"tile: {bands['red'].shape[0]} x {bands['red'].shape[1]} = {pixels / 1e6:.1f} Mpx of real reflectance")
    ours = timed("LAI + sigma + flags (musyq)", lambda: biophysical("LAI", bands, 0.0, sun, 0.0, sigma))
    floor = timed("LAI + sigma (numpy, (11, n) matrices)", lambda: numpy_lai(bands, sigma, sun), repeat=1)
    print(f"{'':42s} ratio {floor / ours:.1f}x faster; {pixels / ours / 1e6:.1f} Mpx/s")
    check, _ = numpy_lai(bands, sigma, sun)
    made = biophysical("LAI", bands, 0.0, sun, 0.0).value.reshape(-1)
    finite = np.isfinite(made) & (made > 0.01) & (made < 7.9)
    print(f"{'':42s} agree to {np.max(np.abs(made[finite] - check[finite])):.1e}")
    plain = timed("NDVI, no sigma (numpy)", lambda: (bands["nir"] - bands["red"]) / (bands["nir"] + bands["red"]))
    for name in ("NDVI", "EVI", "NBR"):
        spent = timed(f"{name} + sigma (musyq, spyndex catalog)", lambda n=name: compute_index(n, bands, sigma))
        print(f"{'':42s} {spent / plain:.1f}x the plain numpy NDVI")


if __name__ == "__main__":
    main()
