"""Speed of the musyq cloud mask against s2cloudless on the same Sentinel-2 TOA pixels, in one run.

The input is real: the bundled Sentinel-2 L1C tile 19UDP (900 m, 13 bands, about a third cloud)
calibrated to TOA and repeated to the requested size. musyq computes the whole quality layer
(cloud, shadow, snow, water, probability) by the default method (trees and rules) and by the rules
alone; s2cloudless its cloud probability and mask (LightGBM on 10 bands, with its default smoothing
and dilation). Both are timed on the same arrays; the ratio
is per pixel. s2cloudless (CC BY-SA 4.0) is a benchmark-only dependency:

    pip install s2cloudless
    python benchmarks/bench_mask.py [--size 3000]
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import resources
from pathlib import Path

import numpy as np

from musyq.ard.cloudmask import MaskInputs, MaskMethod, compute_mask
from musyq.io.output import CLOUD
from musyq.ard.pipeline import ArdOptions, mask_inputs, toa_on_tile
from musyq.io.readers import open_scene

S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
PIXEL_SIZE = 20.0  # the repeated image is treated as a 20 m one, the resolution masks are usually made at


def sentinel2_toa(size: int) -> tuple[dict[str, np.ndarray], np.ndarray, MaskInputs]:
    """TOA by band id, the stacked s2cloudless input, and musyq's inputs, all ``size`` x ``size``."""
    sample = Path(str(resources.files("musyq").joinpath("data", "samples", "S2A_MSIL1C_20170729_T19UDP_900m")))
    scene = open_scene(sample)
    geobox = scene.native_geobox("B02")
    toa, temperature, valid, angles = toa_on_tile(scene, geobox, ArdOptions(threads=os.cpu_count() or 1))
    rows, cols = np.nonzero(valid)
    core = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))  # the part with data
    reps = (-(-size // (core[0].stop - core[0].start)), -(-size // (core[1].stop - core[1].start)))
    by_id = {s.band.id: np.ascontiguousarray(np.tile(toa[i][core], reps)[:size, :size])
             for i, s in enumerate(scene.reflective_sources)}
    mosaic_valid = np.tile(valid[core], reps)[:size, :size]
    mosaic_angles = np.tile(angles[(slice(None), *core)], (1, *reps))[:, :size, :size]
    stacked = np.stack([np.nan_to_num(by_id[b]) for b in S2CLOUDLESS_BANDS], axis=-1)[np.newaxis]
    reference = mask_inputs(scene, np.stack(list(by_id.values())), temperature, mosaic_valid, mosaic_angles,
                            PIXEL_SIZE)
    return by_id, stacked, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=3000, help="image side in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (best is kept)")
    args = parser.parse_args()
    try:
        from s2cloudless import S2PixelCloudDetector
    except ImportError:
        raise SystemExit("s2cloudless is not installed: pip install s2cloudless") from None

    _, stacked, inputs = sentinel2_toa(args.size)
    pixels = args.size * args.size
    compute_mask(MaskInputs({k: v[:64, :64] for k, v in inputs.bands.items()}, inputs.sun_zenith,
                            inputs.sun_azimuth, PIXEL_SIZE))  # compile the numba kernels outside the timing
    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2, all_bands=False)

    ours_s, rules_s, theirs_s = [], [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ours = compute_mask(inputs)
        ours_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        compute_mask(inputs, MaskMethod.rules)
        rules_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = detector.get_cloud_masks(stacked)[0].astype(bool)
        theirs_s.append(time.perf_counter() - start)
    best_ours, best_theirs = min(ours_s), min(theirs_s)
    cloud = ours.quality == CLOUD
    valid = inputs.valid if inputs.valid is not None else np.ones_like(cloud)
    print(f"{args.size} x {args.size} px ({pixels / 1e6:.1f} Mpx) of real Sentinel-2 TOA, {os.cpu_count()} cores")
    print(f"musyq mask (cloud, shadow, snow, water, probability): {best_ours:.2f} s, "
          f"{best_ours / pixels * 1e9:.0f} ns/px (model {ours.notes.get('cloud_model', 'none')})")
    print(f"musyq rules alone (--mask-method rules):              {min(rules_s):.2f} s, "
          f"{min(rules_s) / pixels * 1e9:.0f} ns/px")
    print(f"s2cloudless (cloud probability and mask):             {best_theirs:.2f} s, "
          f"{best_theirs / pixels * 1e9:.0f} ns/px")
    print(f"musyq is {best_theirs / best_ours:.1f}x faster per pixel")
    print(f"cloud: musyq {100 * cloud[valid].mean():.1f} %, s2cloudless {100 * theirs[valid].mean():.1f} %, "
          f"same call on {100 * (cloud == theirs)[valid].mean():.1f} % of pixels")


if __name__ == "__main__":
    main()
