"""Planning an order: the Level-1 inputs that meet the area and period, the MGRS tiles, and the tasks that make
the products, as a graph (each task names the tasks it needs) with its expected outputs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from odc.geo.geom import Geometry

from musyq.core.errors import MusyqError
from musyq.core.grid import TileIndex
from musyq.core.sensors import resolve_sensor_id
from musyq.io.catalog import as_datetime
from musyq.io.stac_inputs import is_stac, list_scenes, local_folder, mgrs_tile
from musyq.products.names import resolve_products
from musyq.timeseries.methods import METHODS

BASE = ("SR",)  # the ARD itself
SERIES = ("ARDP",)  # monthly ARD+ per tile
COMPOSITES = tuple(m.upper().replace("-", "") for m in METHODS)
# seconds of work per megapixel of a tile, measured on 2 cores (benchmarks/bench_atmcor.py: 31 s per 13.4 Mpx)
SECONDS_PER_MPX = {"ard": 2.3, "product": 0.3, "composite": 0.5, "reconstruct": 4.0}
BYTES_PER_PIXEL = {"ard": 40, "product": 12, "composite": 20, "reconstruct": 60}


@dataclass(frozen=True)
class PlannedTask:
    key: str
    kind: str
    params: dict[str, Any]
    depends: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    tasks: list[PlannedTask]
    scenes: int
    tiles: list[str]
    seconds: float  # estimated work, one core
    bytes: float  # estimated output size
    skipped: dict[str, str] = field(default_factory=dict)  # input -> why it was left out

    def counts(self) -> dict[str, int]:
        return dict(Counter(t.kind for t in self.tasks))


def split_products(names: list[str]) -> tuple[list[str], list[str], bool]:
    """(per-item products, composite methods, ARD+): every name checked, SR implied."""
    items, composites, series = [], [], False
    for name in names:
        upper = name.strip().upper().replace("-", "")
        if upper in BASE:
            continue
        if upper in SERIES:
            series = True
        elif upper in COMPOSITES:
            composites.append(METHODS[COMPOSITES.index(upper)])
        else:
            items += resolve_products([name])
    return items, composites, series


@dataclass(frozen=True)
class Source:
    """A Level-1 scene of the order: a local product, or files listed in STAC that a fetch task gathers."""

    id: str
    sensor: str
    acquired: datetime
    footprint: shapely.Geometry  # lon/lat
    path: str | None = None
    files: dict[str, str] | None = None
    tile: str | None = None  # a Sentinel-2 product's own tile


def _candidates(folder: Path) -> list[Path]:
    """A product itself, or the products one or two levels inside a folder of archives."""
    from musyq.io.readers import readers  # with the ARD stage's kernels: imported for folder inputs only

    probe = readers()[:3]  # products with metadata: plain band files cannot be ordered (they carry no time)
    if any(r.can_read(folder) for r in probe):
        return [folder]
    found = []
    for child in sorted(folder.iterdir()) if folder.is_dir() else []:
        if any(r.can_read(child) for r in probe):
            found.append(child)
        elif child.is_dir():
            found += [g for g in sorted(child.iterdir()) if any(r.can_read(g) for r in probe)]
    return found


def _local_sources(folder: Path, area: shapely.Geometry, first: datetime, last: datetime,
                   wanted: set[str] | None, skipped: dict[str, str]) -> list[Source]:
    from musyq.io.readers import readers

    if not folder.exists():
        raise MusyqError(f"{folder}: no such input folder")
    sources = []
    for path in _candidates(folder):
        reader = next(r for r in readers()[:3] if r.can_read(path))
        try:
            scene = reader.open(path)
        except MusyqError as exc:
            skipped[str(path)] = str(exc)
            continue
        when = as_datetime(scene.acquired)
        if not first <= when <= last or (wanted and scene.sensor.id not in wanted):
            continue
        footprint = scene.footprint.to_crs("EPSG:4326").geom
        if area.intersects(footprint):
            tile = mgrs_tile(scene.product_id) if scene.sensor.id.startswith("S2") else None
            sources.append(Source(scene.product_id, scene.sensor.id, when, footprint, path=str(scene.product_path),
                                  tile=tile))
    return sources


def find_sources(inputs: list[str], area: Geometry, start: date, end: date,
                 sensors: list[str] | None) -> tuple[list[Source], dict[str, str]]:
    """The scenes of ``inputs`` (folders of products, STAC documents) acquired from ``start`` to ``end`` whose
    footprint meets ``area``, and the inputs left out with the reason."""
    wanted = {resolve_sensor_id(s) for s in sensors} if sensors else None
    first, last = as_datetime(start), as_datetime(end, end=True)
    region = area.to_crs("EPSG:4326").geom
    sources: list[Source] = []
    skipped: dict[str, str] = {}
    for given in inputs:
        if not is_stac(given):
            sources += _local_sources(Path(given), region, first, last, wanted, skipped)
            continue
        listed, left_out = list_scenes(given, region, first, last, wanted)
        skipped |= left_out
        for scene in listed:
            folder = local_folder(scene.files)
            sources.append(Source(scene.id, scene.sensor, scene.acquired, scene.footprint,
                                  path=str(folder) if folder else None, files=None if folder else scene.files,
                                  tile=scene.tile))
    return sources, skipped


def plan_order(inputs: Sequence[str | Path], area: Geometry, start: date, end: date, products: list[str],
               sensors: list[str] | None, resolution: float) -> Plan:
    """Every task of the order, each with what it needs."""
    if end < start:
        raise MusyqError(f"the period ends ({end}) before it starts ({start})")
    index = TileIndex(area)
    if not index.tiles:
        raise MusyqError("the area touches no Sentinel-2 tile (the grid covers about 80 S to 84 N)")
    items, composites, series = split_products(products)
    sources, skipped = find_sources([str(i) for i in inputs], area, start, end, sensors)
    if not sources:
        raise MusyqError(f"no Level-1 scene in {', '.join(map(str, inputs))} meets the area from {start} to {end}"
                         + (f" ({len(skipped)} unreadable)" if skipped else ""))
    megapixels = (109_800 / resolution) ** 2 / 1e6
    tasks: list[PlannedTask] = []
    by_tile: dict[str, list[str]] = {}
    seconds = size = 0.0
    used: set[str] = set()
    touched = index.overlapping(np.array([s.footprint for s in sources], dtype=object))
    for source, tiles in zip(sources, touched, strict=True):
        if source.tile:  # its neighbours' strips come from the neighbours' own products of the same pass
            tiles = [t for t in tiles if t.id == source.tile]
        if not tiles or source.id in used:  # the same scene found in two inputs is made once
            continue
        used.add(source.id)
        fetch: tuple[str, ...] = ()
        if source.files is not None:
            fetch = (f"fetch:{source.id}",)
            tasks.append(PlannedTask(fetch[0], "fetch", {"scene": source.id, "files": source.files}))
        for tile in tiles:
            key = f"ard:{source.id}:{tile.id}"
            params = {"tile": tile.id, "resolution": resolution} | ({"path": source.path} if source.path else {})
            tasks.append(PlannedTask(key, "ard", params, fetch))
            by_tile.setdefault(tile.id, []).append(key)
            seconds += SECONDS_PER_MPX["ard"] * megapixels
            size += BYTES_PER_PIXEL["ard"] * megapixels * 1e6
            if items:
                tasks.append(PlannedTask(f"product:{source.id}:{tile.id}", "product",
                                         {"ard": key, "names": items}, (key,)))
                seconds += SECONDS_PER_MPX["product"] * megapixels * len(items)
                size += BYTES_PER_PIXEL["product"] * megapixels * 1e6 * len(items)
    months = max(1, (end.year - start.year) * 12 + end.month - start.month + 1)
    for tile_id, needed in sorted(by_tile.items()):
        for method in composites:
            tasks.append(PlannedTask(f"composite:{method}:{tile_id}", "composite",
                                     {"tile": tile_id, "method": method, "start": start.isoformat(),
                                      "end": end.isoformat(), "resolution": resolution}, tuple(needed)))
            seconds += SECONDS_PER_MPX["composite"] * megapixels * len(needed)
            size += BYTES_PER_PIXEL["composite"] * megapixels * 1e6 * months
        if series:
            tasks.append(PlannedTask(f"reconstruct:{tile_id}", "reconstruct",
                                     {"tile": tile_id, "start": start.isoformat(), "end": end.isoformat(),
                                      "resolution": resolution}, tuple(needed)))
            seconds += SECONDS_PER_MPX["reconstruct"] * megapixels * len(needed)
            size += BYTES_PER_PIXEL["reconstruct"] * megapixels * 1e6 * months
    return Plan(tasks, len(used), sorted(by_tile), seconds, size, skipped)
