"""Plan an order of one year over about 100 tiles against a static STAC catalog of 10,000 Level-1 items (the
tiles' own squares as footprints, 100 acquisitions a tile spread over the year, 13 band assets each), the way a
user does: ``musyq order create`` as a process, storing the order in a fresh SQLite file. Prints the time of the
command and of planning in this process (reading the catalog, matching footprints to tiles), with the counts.

    python benchmarks/bench_planning.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from odc.geo.geom import box
from shapely.geometry import mapping

from musyq.core.grid import TileIndex
from musyq.production.plan import plan_order

MUSYQ = str(Path(sys.executable).parent / "musyq")
AREA = (-0.5, 42.5, 10.5, 51.5)  # W, S, E, N: France east of Paris to the Alps and the Rhine
ITEMS = 10_000
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def write_catalog(folder: Path) -> tuple[Path, int]:
    tiles = TileIndex(box(*AREA, "EPSG:4326")).tiles
    per_tile = -(-ITEMS // len(tiles))
    links = []
    for n in range(ITEMS):
        tile = tiles[n % len(tiles)]
        outline = tile.footprint.to_crs("EPSG:4326", resolution=20_000).geom
        when = datetime(2021, 1, 1) + timedelta(days=365 * (n // len(tiles)) / per_tile, hours=10.5)
        item_id = f"S2{'AB'[n % 2]}_MSIL1C_{when:%Y%m%dT%H%M%S}_T{tile.id}"
        item = {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "geometry": mapping(outline),
                "bbox": list(outline.bounds), "links": [],
                "properties": {"datetime": when.isoformat() + "Z", "platform": f"sentinel-2{'ab'[n % 2]}"},
                "assets": {b: {"href": f"https://archive.example/{item_id}/{b}.jp2", "roles": ["data"]}
                           for b in BANDS}}
        (folder / f"{item_id}.json").write_text(json.dumps(item))
        links.append({"rel": "item", "href": f"./{item_id}.json"})
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps({"type": "Catalog", "stac_version": "1.1.0", "id": "l1", "description": "L1C",
                                   "links": links}))
    return catalog, len(tiles)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        catalog, tiles = write_catalog(folder)
        start = time.perf_counter()
        plan = plan_order([str(catalog)], box(*AREA, "EPSG:4326"), datetime(2021, 1, 1).date(),
                          datetime(2021, 12, 31).date(), ["SR", "NDVI"], None, 30.0)
        planning = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([MUSYQ, "order", "create", "--area", ",".join(map(str, AREA)), "--from", "2021-01-01",
                        "--to", "2021-12-31", "--products", "SR,NDVI", "--inputs", str(catalog), "--out",
                        str(folder / "out"), "--db", str(folder / "orders.sqlite")], check=True,
                       capture_output=True)
        command = time.perf_counter() - start
    print(f"{ITEMS} items over {tiles} tiles: {plan.scenes} scenes, {len(plan.tasks)} tasks {plan.counts()}")
    print(f"planning in process: {planning:.2f} s; musyq order create (start-up, planning, storing): "
          f"{command:.2f} s (target < 10 s)")


if __name__ == "__main__":
    main()
