"""The Sentinel-2 tiling grid (MGRS 100 km squares, 109.8 km tiles in UTM) at any pixel size.

The packaged table lists every Sentinel-2 tile with its UTM EPSG code and upper-left corner; pixel
grids are ``odc.geo`` ``GeoBox`` objects anchored on that corner.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box

from musyq.core.errors import GridError

TILE_SIZE_M = 109_800.0


@dataclass(frozen=True)
class Tile:
    """One Sentinel-2/MGRS tile: id such as ``18SVG``, its UTM EPSG code and upper-left corner (m)."""

    id: str
    epsg: int
    ulx: float
    uly: float

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    @property
    def footprint(self) -> Geometry:
        return box(self.ulx, self.uly - TILE_SIZE_M, self.ulx + TILE_SIZE_M, self.uly, self.crs)

    def geobox(self, resolution: float) -> GeoBox:
        """The tile's pixel grid; sizes that do not divide 109.8 km round up (16 m gives 6863 px)."""
        if resolution <= 0:
            raise GridError(f"pixel size must be positive, got {resolution}")
        pixels = math.ceil(TILE_SIZE_M / resolution - 1e-9)
        return GeoBox((pixels, pixels), Affine(resolution, 0, self.ulx, 0, -resolution, self.uly), self.crs)


def crs_wkt(geobox: GeoBox) -> str:
    """The WKT of a geobox's CRS; every grid musyq writes on has one."""
    if geobox.crs is None:
        raise GridError("the pixel grid has no coordinate reference system")
    return str(geobox.crs.to_wkt())


@dataclass(frozen=True, eq=False)
class _TileTable:
    ids: NDArray[np.str_]
    epsg: NDArray[np.int32]
    ulx: NDArray[np.float64]
    uly: NDArray[np.float64]

    def tile(self, index: int) -> Tile:
        return Tile(str(self.ids[index]), int(self.epsg[index]), float(self.ulx[index]), float(self.uly[index]))


@cache
def _table() -> _TileTable:
    source = resources.files("musyq").joinpath("data", "grid", "s2_tiles.csv.gz")
    with source.open("rb") as raw, gzip.open(raw, "rt") as handle:
        next(handle)
        rows = [line.rstrip().split(",") for line in handle]
    columns = list(zip(*rows, strict=True))
    return _TileTable(
        ids=np.array(columns[0]),
        epsg=np.array(columns[1], dtype=np.int32),
        ulx=np.array(columns[2], dtype=float),
        uly=np.array(columns[3], dtype=float),
    )


def get_tile(tile_id: str) -> Tile:
    """Look a tile up by id (``18SVG``, also accepted as ``T18SVG``)."""
    key = tile_id.strip().upper().removeprefix("T")
    table = _table()
    index = np.searchsorted(table.ids, key)
    if index >= len(table.ids) or table.ids[index] != key:
        raise GridError(f"{tile_id!r} is not a Sentinel-2 tile id (expected like 18SVG)")
    return table.tile(int(index))


def tiles_touching(footprint: Geometry) -> list[Tile]:
    """Every tile whose square overlaps ``footprint`` (any CRS), in id order."""
    lonlat = footprint.to_crs("EPSG:4326")
    west, south, east, north = lonlat.boundingbox
    first_zone = math.floor((west + 180) / 6) + 1
    last_zone = math.floor((east + 180) / 6) + 1
    zones = {((z - 1) % 60) + 1 for z in range(first_zone - 1, last_zone + 2)}
    hemispheres = {32600} if south >= 0 else {32700} if north < 0 else {32600, 32700}
    table = _table()
    found: list[Tile] = []
    for epsg in sorted(h + z for h in hemispheres for z in zones):
        candidates = np.flatnonzero(table.epsg == epsg)
        if candidates.size == 0:
            continue
        local = footprint.to_crs(f"EPSG:{epsg}")
        left, bottom, right, top = local.boundingbox
        near = candidates[
            (table.ulx[candidates] < right) & (table.ulx[candidates] + TILE_SIZE_M > left)
            & (table.uly[candidates] > bottom) & (table.uly[candidates] - TILE_SIZE_M < top)
        ]
        for index in near:
            tile = table.tile(int(index))
            if tile.footprint.intersection(local).area > 0:
                found.append(tile)
    return sorted(found, key=lambda t: t.id)


class TileIndex:
    """The tiles of an area, each clipped to the area in lon/lat, in a search tree: thousands of scene footprints
    find the tiles they share more than a touch with in one vectorized query, instead of a reprojection per
    scene and zone."""

    def __init__(self, area: Geometry) -> None:
        self.tiles = tiles_touching(area)
        region = area.to_crs("EPSG:4326").geom
        # edges densified every 20 km: a UTM square's sides curve in lon/lat by metres between such points
        outlines = [t.footprint.to_crs("EPSG:4326", resolution=20_000).geom for t in self.tiles]
        self.parts = shapely.intersection(np.array(outlines, dtype=object), region)
        self.tree = shapely.STRtree(self.parts)

    def overlapping(self, footprints: NDArray[np.object_]) -> list[list[Tile]]:
        """For each lon/lat footprint, the tiles (in id order) whose part in the area its interior meets."""
        found: list[list[Tile]] = [[] for _ in range(len(footprints))]
        if len(footprints) == 0 or not self.tiles:
            return found
        scene, tile = self.tree.query(footprints, predicate="intersects")
        inner = ~shapely.touches(footprints[scene], self.parts[tile])  # polygons: a shared area, not an edge
        for s, t in zip(scene[inner], tile[inner], strict=True):
            found[s].append(self.tiles[t])
        for tiles in found:
            tiles.sort(key=lambda t: t.id)
        return found
