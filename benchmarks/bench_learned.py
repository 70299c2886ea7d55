"""The learned atmospheric correction against the physical one, on a full tile, measured in the same run.

A full 10980 x 10980 Sentinel-2 tile (the bundled crop repeated over 18SVG) at 30 m (3660 x 3660 pixels,
11 surface bands). First the chain: ``musyq ard`` in child processes with TOA only (``--aod off``), with the
physical correction (dark-target aerosol, B09 water vapour) and with ``--correction learned`` (NBAR and the
bandpass adjustment off in both, so that the difference to the TOA run is the correction's share). Then the
correction steps alone, in this process, on the TOA, angles and mask that the TOA run wrote: ``correct_tile``
(retrievals, table coefficients, per-pixel inversion with its sigma) against ``correct_tile_learned`` (scene
context, the networks on the coarse grid, per-pixel inversion by every member). Wall time, peak resident
memory of the children (best of two runs each) and the ratios are printed.

    python benchmarks/bench_learned.py [--keep DIR]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).parent))
from bench_ard import ACQUIRED, TILE, full_tile_workspace, measure  # noqa: E402

from musyq.ard.learned import load_emulator, shipped_model  # noqa: E402
from musyq.ard.lut import load_table  # noqa: E402
from musyq.ard.surface import AtmosphereOptions, correct_tile, correct_tile_learned  # noqa: E402
from musyq.core.sensors import get_sensor  # noqa: E402
from musyq.io.output import ANGLE_NODATA, ANGLE_SCALE, CLEAR, REFLECTANCE_SCALE  # noqa: E402


def run(inputs: Path, out: Path, *options: str) -> tuple[float, float]:
    return measure([sys.executable, "-m", "musyq", "ard", str(inputs), "--sensor", "S2A", "--datetime", ACQUIRED,
                    "--tile", TILE, "--resolution", "30", "--out", str(out), "--overwrite", "--no-nbar",
                    "--bandpass-to", "none", *options])


def best_of(repeats: int, *steps: Callable[[], None]) -> list[float]:
    """The shortest wall time of each step, the steps taking turns (so that neither finds the machine warmer)."""
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, spent in zip(steps, times, strict=True):
            start = time.perf_counter()
            step()
            spent.append(time.perf_counter() - start)
    return [min(spent) for spent in times]


def main() -> None:
    with full_tile_workspace(__doc__) as (work, full):
        cores = os.cpu_count() or 1
        toa_runs, physical_runs, learned_runs = (
            [run(full, work / "toa", "--aod", "off") for _ in range(2)],
            [run(full, work / "physical", "--aod", "auto") for _ in range(2)],
            [run(full, work / "learned", "--correction", "learned") for _ in range(2)])
        (toa_s, toa_gib), (physical_s, physical_gib), (learned_s, learned_gib) = (
            min(runs) for runs in (toa_runs, physical_runs, learned_runs))
        noise = abs(toa_runs[0][0] - toa_runs[1][0])
        physical_share, learned_share = physical_s - toa_s, learned_s - toa_s
        print(f"full tile 18SVG at 30 m (3660 x 3660) on {cores} cores, chains best of 2")
        print(f"chain  TOA only {toa_s:6.1f} s {toa_gib:5.2f} GiB | two runs differ by {noise:4.1f} s")
        print(f"chain  physical {physical_s:6.1f} s {physical_gib:5.2f} GiB | correction's share {physical_share:5.1f} s")
        ratio = (f"{physical_share / learned_share:4.1f}x faster" if learned_share > noise else
                 "within the TOA runs' own difference")
        print(f"chain  learned  {learned_s:6.1f} s {learned_gib:5.2f} GiB | correction's share {learned_share:5.1f} s | "
              f"{ratio}")

        item = next((work / "toa").rglob("*.TOA.tif"))
        with rasterio.open(item) as source:
            toa = source.read().astype(np.float32) / REFLECTANCE_SCALE
            names = list(source.descriptions)
        with rasterio.open(str(item).replace(".TOA.", ".ANG.")) as source:
            encoded = source.read()
        with rasterio.open(str(item).replace(".TOA.", ".MASK.")) as source:
            quality = source.read(1)
        valid = encoded[0] != ANGLE_NODATA
        angles = encoded.astype(np.float32) / ANGLE_SCALE
        toa[:, ~valid] = np.nan
        sensor = get_sensor("S2A_MSI")
        bands = tuple(next(b for b in sensor.bands if b.common_name == name) for name in names)
        clear = quality == CLEAR
        options = AtmosphereOptions()
        emulator = load_emulator(shipped_model("S2A_MSI", tuple(b.id for b in bands)))
        table = load_table("S2A_MSI")

        def physical() -> None:
            correct_tile(table, bands, toa, angles, valid, 30.0, options, clear=clear)

        def learned() -> None:
            correct_tile_learned(emulator, bands, toa, angles, valid, options, clear=clear)

        physical_step, learned_step = best_of(3, physical, learned)
        surface_bands = len(table.surface_bands)
        print(f"step   physical correct_tile          {physical_step:6.2f} s "
              f"({3660 * 3660 * surface_bands / 1e6 / physical_step / cores:5.1f} Mpixel-bands/s/core)")
        print(f"step   learned correct_tile_learned   {learned_step:6.2f} s "
              f"({3660 * 3660 * len(emulator.bands) / 1e6 / learned_step / cores:5.1f} Mpixel-bands/s/core) | "
              f"{physical_step / learned_step:4.1f}x faster ({len(emulator.members)} members, "
              f"{len(emulator.bands)} bands)")


if __name__ == "__main__":
    main()
