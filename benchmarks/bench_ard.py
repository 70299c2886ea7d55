"""Time Level-1 -> TOA ARD tiles against a rasterio-only floor measured in the same run.

Two inputs: the bundled Sentinel-2 crop (3.84 km, tile 18SVG) and a full 10980 x 10980 tile built by
repeating that crop over the whole of 18SVG at every band's native pixel size. For each, ``musyq ard``
(read + TOA + angles + tiling + COG/STAC writing) runs in a child process, then the floor: rasterio alone
reading the same band files onto the 30 m grid and writing COGs of the same shapes and encodings.
Wall time and peak resident memory of each child are printed with their ratio.

    python benchmarks/bench_ard.py [--format gtiff|jp2] [--resolution 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from musyq.core.grid import get_tile

CROP = Path(__file__).resolve().parents[1] / "src/musyq/data/samples/S2A_20160112_T18SVG_crop"
TILE = "18SVG"
ACQUIRED = "2016-01-12T15:35:12"

FLOOR = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np, rasterio, rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.io import MemoryFile
    from rasterio.warp import reproject
    from musyq.core.grid import get_tile

    inputs, out, resolution = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    geobox = get_tile(sys.argv[4]).geobox(resolution)
    bands = []
    for path in sorted(p for p in inputs.iterdir() if p.suffix in ('.tif', '.jp2')):
        with rasterio.open(path) as src:
            data = np.zeros(geobox.shape.yx, dtype=np.uint16)
            reproject(rasterio.band(src, 1), data, dst_transform=geobox.affine, dst_crs=geobox.crs.to_wkt(),
                      resampling=Resampling.average, num_threads=2, warp_mem_limit=256)
            bands.append(data)
    stack = np.stack(bands)
    layers = {"TOA": stack, "ANG": np.broadcast_to(stack[:1], (4, *stack.shape[1:])), "MASK": stack[:1].astype(np.uint8)}
    out.mkdir(parents=True, exist_ok=True)
    for name, data in layers.items():
        profile = dict(driver="GTiff", count=data.shape[0], height=data.shape[1], width=data.shape[2],
                       dtype=data.dtype.name, crs=geobox.crs.to_wkt(), transform=geobox.affine, nodata=0)
        with MemoryFile() as memory:
            with memory.open(**profile) as dst:
                dst.write(data)
            with memory.open() as dst:
                rasterio.shutil.copy(dst, out / f"{name}.tif", driver="COG", compress="DEFLATE", predictor="2",
                                     blocksize=512, num_threads="ALL_CPUS", bigtiff="IF_SAFER")
""")


def build_full_tile(crop: Path, folder: Path, driver: str) -> Path:
    """Repeat every band of the crop over the whole tile at the band's own pixel size."""
    tile = get_tile(TILE)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".jp2" if driver == "JP2OpenJPEG" else ".tif"
    for path in sorted(crop.glob("*.tif")):
        with rasterio.open(path) as src:
            data = src.read(1)
            resolution = src.res[0]
            crs = src.crs
        size = round(109_800 / resolution)
        reps = -(-size // data.shape[0])
        full = np.tile(data, (reps, reps))[:size, :size]
        options = ({"QUALITY": "100", "REVERSIBLE": "YES", "BLOCKXSIZE": 1024, "BLOCKYSIZE": 1024}
                   if suffix == ".jp2" else {"tiled": True, "compress": "deflate", "blockxsize": 512, "blockysize": 512})
        with rasterio.open(folder / f"{path.stem}{suffix}", "w", driver=driver, width=size, height=size, count=1,
                           dtype="uint16", crs=crs, nodata=0,
                           transform=Affine(resolution, 0, tile.ulx, 0, -resolution, tile.uly), **options) as dst:
            dst.write(full, 1)
    return folder


@contextmanager
def full_tile_workspace(description: str) -> Iterator[tuple[Path, Path]]:
    """The work folder (``--keep DIR`` or a temporary one, removed after) and the GeoTIFF full tile in it."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="build the tile here and keep it for later runs")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="musyq-bench-"))
    try:
        full = work / "full-tile-gtiff"
        if not full.exists():
            build_full_tile(CROP, full, "GTiff")
        yield work, full
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident GiB of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss / 2**20


def compare(label: str, inputs: Path, work: Path, resolution: float) -> None:
    musyq = [sys.executable, "-m", "musyq", "ard", str(inputs), "--sensor", "S2A", "--datetime", ACQUIRED,
             "--tile", TILE, "--resolution", f"{resolution:g}", "--out", str(work / "musyq"), "--overwrite",
             "--aod", "off"]  # the TOA chain (with its cloud mask); bench_atmcor.py times the correction
    floor = [sys.executable, "-c", FLOOR, str(inputs), str(work / "floor"), f"{resolution:g}", TILE]
    musyq_s, musyq_gib = measure(musyq)
    floor_s, floor_gib = measure(floor)
    print(f"{label:<34} musyq {musyq_s:7.1f} s {musyq_gib:5.2f} GiB | floor {floor_s:7.1f} s {floor_gib:5.2f} GiB"
          f" | ratio {musyq_s / floor_s:4.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=["gtiff", "jp2"], default="jp2")
    parser.add_argument("--resolution", type=float, default=30.0)
    parser.add_argument("--keep", type=Path, help="build the inputs here and keep them for later runs")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="musyq-bench-"))
    driver = "JP2OpenJPEG" if args.format == "jp2" else "GTiff"
    try:
        full = work / f"full-tile-{args.format}"
        if not full.exists():
            start = time.perf_counter()
            build_full_tile(CROP, full, driver)
            print(f"built the 10980 x 10980 tile ({args.format}) in {time.perf_counter() - start:.0f} s")
        print(f"Level-1 -> TOA COGs at {args.resolution:g} m on {os.cpu_count()} cores, wall time and peak memory")
        compare("Sentinel-2 crop (384 x 384 at 10 m)", CROP, work / "out-crop", args.resolution)
        compare(f"full tile (10980 x 10980, {args.format})", full, work / "out-full", args.resolution)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
