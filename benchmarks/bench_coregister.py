"""Accuracy and speed of ``musyq coregister`` against arosics on the same image pairs, in one run.

Pairs (real Sentinel-2 and Landsat 8 data of tile 31UFS bundled with the tests, 10 m):

* same sensor: Sentinel-2 B08 against itself moved by known sub-pixel amounts (Fourier shift);
* across sensors: Sentinel-2 B04 (2019-04-11) against Landsat 8 B04 (2020-06-13, 30 m resampled to
  10 m by the provider) moved by the same amounts, by Fourier shift and by cubic resampling (which
  also smooths); the error is the change of the estimate against the unmoved pair, whose true offset
  is not known;
* optionally (``--large PATH``) a large single-band image against itself moved by Fourier shift, where
  arosics correlates one 256 px window and musyq the central 1024 px and a grid of tie windows.

arosics needs GDAL's Python bindings, so it runs in its own Python (``--arosics-python``, a virtual
environment with ``pip install arosics gdal==<libgdal version>``) on GeoTIFFs written here; both tools
get the same files, in two modes: a global shift (arosics ``COREG``, one 256 px window; musyq the central
1024 px plus tie windows for the RMSE) and tie points (arosics ``COREG_LOCAL`` on the grid and window size
of musyq's tie windows, its mean shift; musyq's local mode, its affine's offset at the image centre).

    python benchmarks/bench_coregister.py --arosics-python /path/to/venv/bin/python [--large B08.jp2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from musyq.ard.coregister import MAX_WINDOWS, Mode, read_pair, register, window_size

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "openeo-31UFS"
SHIFTS = [(0.3, -0.2), (1.7, 0.45), (-2.25, 1.1), (0.05, -3.3), (0.77, 0.61), (-0.4, 0.9), (2.9, 2.6), (-1.35, -0.05)]
MARGIN = 16

AROSICS = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from arosics import COREG, COREG_LOCAL
out = []
job = json.loads(sys.argv[1])
for reference, target in job["pairs"]:
    start = time.perf_counter()
    try:
        if job["local"]:
            run = COREG_LOCAL(reference, target, grid_res=job["grid"], window_size=(job["window"], job["window"]),
                              max_shift=8, q=True, nodata=(-9999, -9999), CPUs=2)
            table = run.CoRegPoints_table
            good = table[(table["OUTLIER"] == False) & (table["X_SHIFT_PX"] != -9999)]
            x, y = float(good["X_SHIFT_PX"].mean()), float(good["Y_SHIFT_PX"].mean())
        else:
            run = COREG(reference, target, ws=(256, 256), max_shift=8, q=True, nodata=(-9999, -9999))
            run.calculate_spatial_shifts()
            x, y = run.x_shift_px, run.y_shift_px
        out.append([x, y, time.perf_counter() - start])
    except Exception as exc:  # arosics raises when it finds no reliable match
        out.append([None, None, time.perf_counter() - start])
print(json.dumps(out))
"""


def read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as dataset:
        values = dataset.read(1).astype(np.float32)
        profile = dataset.profile
    return np.where((values == 65535) | (values == 0), np.nan, values / 10000).astype(np.float32), profile


def write(path: Path, values: np.ndarray, profile: dict) -> Path:
    window = values[MARGIN:-MARGIN, MARGIN:-MARGIN]
    transform = profile["transform"] * rasterio.Affine.translation(MARGIN, MARGIN)
    with rasterio.open(path, "w", driver="GTiff", width=window.shape[1], height=window.shape[0], count=1,
                       dtype="float32", crs=profile["crs"], transform=transform, nodata=-9999) as dataset:
        dataset.write(np.nan_to_num(window, nan=-9999), 1)
        dataset.descriptions = ("band",)
    return path


def moved(image: np.ndarray, dx: float, dy: float, how: str) -> np.ndarray:
    filled = np.nan_to_num(image, nan=float(np.nanmean(image)))
    if how == "cubic":
        return ndimage.shift(filled, (dy, dx), order=3, mode="nearest").astype(np.float32)
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(filled), (dy, dx))).real.astype(np.float32)


def rmse(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(errors**2, axis=1))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arosics-python", type=Path, required=True, help="python of an environment with arosics")
    parser.add_argument("--large", type=Path, help="a large single-band reflectance image (scale 10000)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="musyq-coreg-"))
    sentinel_nir, sentinel_red, landsat_red = (DATA / f"ref_input_{name}.tif"
                                               for name in ("S2_B08", "S2_B04", "L8_B04"))
    pairs = {"same sensor (S2 B08), Fourier shifts": (sentinel_nir, sentinel_nir, "fourier"),
             "across sensors (S2 B04 / L8 B04), Fourier shifts": (sentinel_red, landsat_red, "fourier"),
             "across sensors (S2 B04 / L8 B04), cubic shifts": (sentinel_red, landsat_red, "cubic")}
    if args.large:
        pairs[f"large image ({args.large.name}), Fourier shifts"] = (args.large, args.large, "fourier")
    for number, (label, (reference_file, image_file, how)) in enumerate(pairs.items()):
        reference, profile = read(reference_file)
        image, _ = read(image_file)
        reference_path = write(work / f"reference_{number}.tif", reference, profile)
        files = [write(work / f"image_{number}_base.tif", image, profile)]
        files += [write(work / f"image_{number}_{k}.tif", moved(image, dx, dy, how), profile) for k, (dx, dy) in
                  enumerate(SHIFTS)]
        for mode in (Mode.global_, Mode.local):
            compare(label, mode, reference_path, files, args.arosics_python)


def compare(label: str, mode: Mode, reference_path: Path, files: list[Path], arosics_python: Path) -> None:
    """Both tools on the same files in one mode; global: one offset (arosics COREG, 256 px window), local:
    tie points on the same grid of windows (arosics COREG_LOCAL), whose mean shift is compared."""
    ours, ours_s = [], 0.0
    for path in files:
        start = time.perf_counter()
        image_band, reference_band, _ = read_pair(path, reference_path, "band")
        found = register(reference_band, image_band, (10.0, 10.0), mode)
        ours_s += time.perf_counter() - start
        ours.append((found.offset_x_px, found.offset_y_px))
    shape = image_band.shape
    window = window_size(shape)
    grid = max(window // 2, (shape[0] - window) // MAX_WINDOWS + 1, (shape[1] - window) // MAX_WINDOWS + 1)
    job = json.dumps({"pairs": [[str(reference_path), str(path)] for path in files], "local": mode == Mode.local,
                      "grid": grid, "window": window})
    theirs_raw = json.loads(subprocess.run([str(arosics_python), "-c", AROSICS, job], check=True,
                                           capture_output=True, text=True).stdout.strip().splitlines()[-1])
    # arosics reports the shift that corrects the target (pixels): the content lies at minus it;
    # where it finds no reliable match it raises, counted here as a failure
    # (or, for tie points, keeps none of them)
    theirs = [(np.nan, np.nan) if x is None or not np.isfinite(x) else (-x, -y) for x, y, _ in theirs_raw]
    theirs_s = sum(t for _, _, t in theirs_raw)
    truth = np.array([(0.0, 0.0), *SHIFTS])
    errors = {name: (np.array(found) - np.array(found)[0]) - truth for name, found in (("musyq", ours),
                                                                                      ("arosics", theirs))}
    failed = sum(not np.isfinite(x) for x, _ in theirs)
    print(f"{label}, {mode.value} mode: unmoved pair musyq {ours[0][0]:+.3f}, {ours[0][1]:+.3f} px; arosics "
          f"{theirs[0][0]:+.3f}, {theirs[0][1]:+.3f} px")
    print(f"  known shifts recovered, RMSE: musyq {rmse(errors['musyq'][1:]):.3f} px, arosics "
          f"{rmse(errors['arosics'][1:]):.3f} px ({failed} of {len(files)} pairs without a result)")
    print(f"  time for {len(files)} pairs: musyq {ours_s:.2f} s, arosics {theirs_s:.2f} s "
          f"({theirs_s / ours_s:.1f}x)")


if __name__ == "__main__":
    main()
