"""Cost of atmospheric correction against the TOA chain it follows, measured in the same run.

On a full 10980 x 10980 Sentinel-2 tile (the bundled crop repeated over 18SVG, tiled GeoTIFF) at 30 m,
``musyq ard`` runs three times in child processes: TOA only (``--aod off``), surface reflectance with a
given atmosphere (``--aod 0.2 --water-vapour 1.5``) and with both retrieved from the image
(``--aod auto``, dark-target aerosol and B09 water vapour). The correction's cost is the difference
to the TOA-only run; throughput is in megapixel-bands of surface reflectance per second per core.

    python benchmarks/bench_atmcor.py [--keep DIR]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_ard import ACQUIRED, TILE, full_tile_workspace, measure  # noqa: E402

from musyq.ard.lut import load_table  # noqa: E402


def run(inputs: Path, out: Path, *atmosphere: str) -> tuple[float, float]:
    return measure([sys.executable, "-m", "musyq", "ard", str(inputs), "--sensor", "S2A", "--datetime", ACQUIRED,
                    "--tile", TILE, "--resolution", "30", "--out", str(out), "--overwrite", *atmosphere])


def main() -> None:
    with full_tile_workspace(__doc__) as (work, full):
        cores = os.cpu_count() or 1
        pixel_bands = 3660 * 3660 * len(load_table("S2A_MSI").surface_bands) / 1e6
        toa_s, toa_gib = run(full, work / "toa", "--aod", "off")
        print(f"full tile at 30 m on {cores} cores; TOA only: {toa_s:.1f} s, {toa_gib:.2f} GiB")
        for label, options in (("given atmosphere", ("--aod", "0.2", "--water-vapour", "1.5")),
                               ("retrieved AOD + vapour", ("--aod", "auto"))):
            start = time.perf_counter()
            seconds, gib = run(full, work / "sr", *options)
            extra = seconds - toa_s
            print(f"{label:<24} L1->SR {seconds:6.1f} s {gib:5.2f} GiB | correction adds {extra:5.1f} s "
                  f"= {extra / toa_s:4.2f} x the TOA chain | {pixel_bands / max(extra, 1e-9) / cores:6.1f} "
                  f"Mpixel-bands/s/core ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
