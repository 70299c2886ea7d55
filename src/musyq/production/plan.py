"""Planning an order: the Level-1 inputs that meet the area and period, the MGRS tiles, and the tasks that make
the products, as a graph (each task names the tasks it needs) with its expected outputs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from odc.geo.geom import Geometry

from musyq.core.errors import MusyqError
from musyq.core.grid import tiles_touching
from musyq.core.scene import Scene
from musyq.core.sensors import resolve_sensor_id
from musyq.io.catalog import as_datetime
from musyq.io.readers import readers
from musyq.products.make import resolve_products
from musyq.timeseries.composite import METHODS

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


def _candidates(folder: Path) -> list[Path]:
    """A product itself, or the products one or two levels inside a folder of archives."""
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


def find_scenes(inputs: list[Path], area: Geometry, start: date, end: date,
                sensors: list[str] | None) -> tuple[list[Scene], dict[str, str]]:
    """The scenes of ``inputs`` acquired from ``start`` to ``end`` whose footprint meets ``area``."""
    wanted = {resolve_sensor_id(s) for s in sensors} if sensors else None
    first, last = as_datetime(start), as_datetime(end, end=True)
    scenes, skipped = [], {}
    for folder in inputs:
        if not folder.exists():
            raise MusyqError(f"{folder}: no such input folder")
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
            if not scene.footprint.to_crs("EPSG:4326").intersects(area):
                continue
            scenes.append(scene)
    return scenes, skipped


def plan_order(inputs: list[Path], area: Geometry, start: date, end: date, products: list[str],
               sensors: list[str] | None, resolution: float) -> Plan:
    """Every task of the order, each with what it needs."""
    if end < start:
        raise MusyqError(f"the period ends ({end}) before it starts ({start})")
    if not tiles_touching(area):
        raise MusyqError("the area touches no Sentinel-2 tile (the grid covers about 80 S to 84 N)")
    items, composites, series = split_products(products)
    scenes, skipped = find_scenes(inputs, area, start, end, sensors)
    if not scenes:
        raise MusyqError(f"no Level-1 scene in {', '.join(map(str, inputs))} meets the area from {start} to {end}"
                         + (f" ({len(skipped)} unreadable)" if skipped else ""))
    tasks: list[PlannedTask] = []
    by_tile: dict[str, list[str]] = {}
    seconds = size = 0.0
    for scene in scenes:
        covered = scene.footprint.to_crs("EPSG:4326").intersection(area)
        for tile in tiles_touching(covered):
            megapixels = (109_800 / resolution) ** 2 / 1e6
            key = f"ard:{scene.product_id}:{tile.id}"
            tasks.append(PlannedTask(key, "ard", {"path": str(scene.product_path), "tile": tile.id,
                                                  "resolution": resolution}))
            by_tile.setdefault(tile.id, []).append(key)
            seconds += SECONDS_PER_MPX["ard"] * megapixels
            size += BYTES_PER_PIXEL["ard"] * megapixels * 1e6
            if items:
                tasks.append(PlannedTask(f"product:{scene.product_id}:{tile.id}", "product",
                                         {"ard": key, "names": items}, (key,)))
                seconds += SECONDS_PER_MPX["product"] * megapixels * len(items)
                size += BYTES_PER_PIXEL["product"] * megapixels * 1e6 * len(items)
    months = max(1, (end.year - start.year) * 12 + end.month - start.month + 1)
    for tile_id, needed in sorted(by_tile.items()):
        megapixels = (109_800 / resolution) ** 2 / 1e6
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
    return Plan(tasks, len(scenes), sorted(by_tile), seconds, size, skipped)
