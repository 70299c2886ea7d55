"""Time one full-size simulated Gaofen-1 WFV scene (12000 x 13400 px, 4 bands) to 16 m ARD tiles against a floor.

The scene is made with ``musyq.ard.simulate`` from a surface about 260 km on a side: the bundled iCOR Sentinel-2
surface reflectance of Mol (31UFS) at 16 m, mirror-tiled, under the eo-learn DEM mirror-tiled at the scale the
tests use (664-801 m). ``musyq ard`` then takes the unpacked Level-1A folder through the whole chain (TOA,
RPC orthorectification on the DEM, per-pixel angles, the surface-prior aerosol retrieval, the 6S inversion, the
4-band mask, NBAR, COG + STAC) onto every 16 m MGRS tile the scene touches, in a child process. The floors, each
in another child: reading the same DN, warping them with the same RPCs and DEM onto the same tile windows and
writing COGs of the same layers, shapes and encodings with musyq's COG writer, the warp done by GDAL's warper with
the RPC and DEM (as a rasterio user would call it) or by musyq's own RPC orthorectification (so the ratio is the
rest of the chain's work).
Wall time and peak resident memory of each are printed with their ratio, and the SR against the simulation's truth.

    python benchmarks/bench_gaofen.py [--keep DIR] [--shape 12000x13400] [--floors musyq,gdal]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

from bench_ard import measure  # the same child-process timing as the TOA benchmark

DATA = Path(__file__).resolve().parents[1] / "tests/data/gaofen-simulation"
BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
TILE = "31UFS"
SIDE_M = 260_000.0
PIXEL_M = 16.0
AOD = 0.2


def mirror(values: np.ndarray, shape: tuple[int, int], offset: tuple[int, int]) -> np.ndarray:
    """``values`` mirror-tiled to ``shape``, the original placed at ``offset`` (rows, columns)."""
    rows, cols = values.shape
    pads = ((offset[0], shape[0] - offset[0] - rows), (offset[1], shape[1] - offset[1] - cols))
    return np.pad(values, pads, mode="symmetric")


def build_surface(folder: Path) -> tuple[dict[str, Path], Path]:
    """The mirror-tiled surface (reflectance x 10000, 16 m) and DEM around the Mol crop, as GeoTIFFs."""
    folder.mkdir(parents=True, exist_ok=True)
    size = round(SIDE_M / PIXEL_M)
    with rasterio.open(DATA / "ref_check_icor_S2_B02.tif") as source:
        left, top, crs = source.bounds.left, source.bounds.top, source.crs
        crop_shape = (round(source.height * source.res[1] / PIXEL_M), round(source.width * source.res[0] / PIXEL_M))
    offset = (size // 2 - crop_shape[0] // 2, size // 2 - crop_shape[1] // 2)
    transform = Affine(PIXEL_M, 0, left - offset[1] * PIXEL_M, 0, -PIXEL_M, top + offset[0] * PIXEL_M)
    profile = dict(driver="GTiff", width=size, height=size, count=1, crs=crs, transform=transform, tiled=True,
                   compress="deflate", blockxsize=512, blockysize=512, bigtiff="YES")
    paths = {}
    for name, band in BANDS.items():
        with rasterio.open(DATA / f"ref_check_icor_S2_{band}.tif") as source:
            crop = source.read(1, out_shape=crop_shape, resampling=Resampling.average, masked=True)
        paths[name] = folder / f"surface_{band}.tif"
        with rasterio.open(paths[name], "w", dtype="uint16", nodata=0, **profile) as out:
            out.write(mirror(crop.filled(0).astype(np.uint16), (size, size), offset), 1)
    heights = np.load(DATA / "eo-learn-DEM.npy")[..., 0].astype(np.float32)
    # one copy over the crop, as the tests stretch it, mirrored on past the surface's edges
    dem_pixel = (crop_shape[0] * PIXEL_M / heights.shape[0], crop_shape[1] * PIXEL_M / heights.shape[1])
    dem_shape = tuple(round((SIDE_M + 4_000) / p) for p in dem_pixel)
    dem_offset = tuple(n // 2 - round(c * PIXEL_M / p) // 2 for n, c, p in zip(dem_shape, crop_shape, dem_pixel))
    dem_profile = dict(profile, width=dem_shape[1], height=dem_shape[0], bigtiff="NO",
                       transform=Affine(dem_pixel[1], 0, left - dem_offset[1] * dem_pixel[1], 0, -dem_pixel[0],
                                        top + dem_offset[0] * dem_pixel[0]))
    dem = folder / "dem.tif"
    with rasterio.open(dem, "w", dtype="float32", **dem_profile) as out:
        out.write(mirror(heights, dem_shape, dem_offset), 1)
    return paths, dem


def build_scene(folder: Path, shape: tuple[int, int]) -> dict[str, Path]:
    """Simulate the Level-1A scene (unpacked folder), its truth, DEM and an aerosol prior of the period."""
    from musyq.ard.simulate import Camera, simulate

    surface, dem = build_surface(folder / "surface")
    camera = Camera(sensor="GF1_WFV1", shape=shape, aot550=AOD)
    made = simulate(surface, "S2B_MSI", TILE, folder, camera, dem, archive=False)
    prior = folder / "prior.tif"
    with rasterio.open(made.truth) as truth:
        factor = 30  # the truth averaged to 480 m: a surface reflectance composite of the period
        out_shape = (truth.count, truth.height // factor, truth.width // factor)
        values = truth.read(out_shape=out_shape, resampling=Resampling.average)
        profile = truth.profile
        profile.update(height=out_shape[1], width=out_shape[2], bigtiff="NO",
                       transform=truth.transform * Affine.scale(truth.width / out_shape[2],
                                                                truth.height / out_shape[1]))
        names = truth.descriptions
    with rasterio.open(prior, "w", **profile) as out:
        out.write(values)
        for index, name in enumerate(names, start=1):
            out.set_band_description(index, name)
    paths = {"product": made.product, "truth": made.truth, "dem": made.dem or dem, "prior": prior}
    (folder / "scene.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    return paths


FLOOR = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np, rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    product, dem, made, out = (Path(v) for v in sys.argv[1:5])
    warper = sys.argv[5]
    images = sorted(product.glob('*.tiff'))
    for item_path in sorted(made.rglob('*.json')):
        item = json.loads(item_path.read_text())
        if item.get('type') != 'Feature':
            continue
        layers = {key: item_path.parent / Path(asset['href']).name for key, asset in item['assets'].items()
                  if asset['href'].endswith('.tif')}
        with rasterio.open(layers['TOA']) as reference:
            profile = reference.profile
        shape = (profile['height'], profile['width'])
        warped = np.zeros((4, *shape), dtype=np.uint16)
        if warper == 'gdal':
            for image in images:
                with rasterio.open(image) as src:
                    for band in range(4):
                        reproject(rasterio.band(src, band + 1), warped[band], rpcs=src.rpcs, src_crs='EPSG:4326',
                                  src_nodata=0, dst_nodata=0, dst_transform=profile['transform'],
                                  dst_crs=profile['crs'], init_dest_nodata=False, resampling=Resampling.bilinear,
                                  num_threads=2, warp_mem_limit=256, RPC_DEM=str(dem), RPC_DEMINTERPOLATION='bilinear')
        else:  # musyq's own RPC orthorectification, the same as the chain's
            from odc.geo.geobox import GeoBox
            from musyq.core.tiling import Terrain, warp_band
            from musyq.io.readers import open_scene
            scene = open_scene(product)
            geobox = GeoBox(shape, profile['transform'], profile['crs'])
            for band, source in enumerate(scene.reflective_sources):
                warped[band] = np.nan_to_num(warp_band(source, geobox, terrain=Terrain(dem)))
        folder = out / item_path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        from odc.geo.geobox import GeoBox
        from musyq.io.output import Layer, write_cog
        geobox = GeoBox(shape, profile['transform'], profile['crs'])
        for key, path in layers.items():
            with rasterio.open(path) as layer:
                count, dtype, nodata = layer.count, layer.dtypes[0], layer.nodata
            data = np.resize(warped, (count, *shape)).astype(dtype)
            # musyq's writer: the same encoding and overview pyramid as the chain's layers
            write_cog(folder / path.name, Layer(key, data, nodata or 0, ('',) * count,
                                                resampling='mode' if key == 'MASK' else 'average'), geobox)
""")


def against_truth(made: Path, truth: Path) -> str:
    """SR bias and RMSE per band over the clear pixels of every tile, against the truth."""
    errors: list[list[np.ndarray]] = [[] for _ in BANDS]
    with rasterio.open(truth) as reference:
        for sr_path in sorted(made.rglob("*.SR.tif")):
            with rasterio.open(sr_path) as sr, rasterio.open(str(sr_path).replace(".SR.", ".MASK.")) as mask:
                if sr.crs != reference.crs:
                    continue  # the truth lies in the first zone's lattice only
                values = sr.read().astype(np.float32) * np.float32(sr.scales[0])
                expected = np.full(values.shape, np.nan, dtype=np.float32)
                for band in range(values.shape[0]):
                    reproject(rasterio.band(reference, band + 1), expected[band], dst_transform=sr.transform,
                              dst_crs=sr.crs, dst_nodata=np.nan, resampling=Resampling.nearest)
                good = (mask.read(2) > 0) & np.isfinite(expected).all(axis=0) & (sr.read(1) != 0)
            for band in range(values.shape[0]):
                errors[band].append(values[band][good] - expected[band][good])
    parts = []
    for name, band_errors in zip(BANDS, errors, strict=True):
        difference = np.concatenate(band_errors)
        parts.append(f"{name} bias {difference.mean():+.4f} RMSE {np.sqrt(np.mean(difference**2)):.4f}")
    return f"SR against the truth over {difference.size} px: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="build the scene here and keep it for later runs")
    parser.add_argument("--shape", default="12000x13400", help="image lines x samples")
    parser.add_argument("--floors", default="musyq,gdal", help="which warpers' floors to measure")
    args = parser.parse_args()
    lines, samples = (int(v) for v in args.shape.lower().split("x"))
    work = args.keep or Path(tempfile.mkdtemp(prefix="musyq-bench-"))
    try:
        scene_file = work / "scene.json"
        if scene_file.exists():
            paths = {k: Path(v) for k, v in json.loads(scene_file.read_text()).items()}
        else:
            start = time.perf_counter()
            paths = build_scene(work, (lines, samples))
            print(f"simulated the {lines} x {samples} px scene in {time.perf_counter() - start:.0f} s")
        made, floor = work / "musyq", work / "floor"
        shutil.rmtree(made, ignore_errors=True)
        shutil.rmtree(floor, ignore_errors=True)
        musyq = [sys.executable, "-m", "musyq", "ard", str(paths["product"]), "--out", str(made), "--resolution", "16",
                 "--dem", str(paths["dem"]), "--aod-prior", str(paths["prior"]), "--bandpass-to", "none"]
        musyq_s, musyq_gib = measure(musyq)
        floors = {warper: measure([sys.executable, "-c", FLOOR, str(paths["product"]), str(paths["dem"]), str(made),
                                   str(floor / warper), warper]) for warper in args.floors.split(",")}
        tiles = sorted({p.parent.parent.name for p in made.rglob("*.SR.tif")})
        print(f"GF-1 WFV1 {lines} x {samples} px x 4 bands -> {len(tiles)} tiles at 16 m ({', '.join(tiles)}) "
              f"on {os.cpu_count()} cores")
        print(f"musyq ard {musyq_s:7.1f} s {musyq_gib:5.2f} GiB")
        for warper, (floor_s, floor_gib) in floors.items():
            print(f"floor: read + RPC warp ({warper}'s) + write the same COGs {floor_s:7.1f} s {floor_gib:5.2f} GiB"
                  f" | ratio {musyq_s / floor_s:4.2f}")
        print(against_truth(made, paths["truth"]))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
