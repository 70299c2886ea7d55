"""Orders end to end on the bundled samples (Sentinel-2 on its tile, Landsat 8 on two): planned from a GeoJSON
area, stored in SQLite, run on a local Dask cluster of worker processes; a rerun runs nothing; a truncated
input fails its own tasks only, named in ``order show``; bad requests are one-line errors and store nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pystac
from distributed import Client
import pytest
import rasterio
from typer.testing import CliRunner

from musyq.cli import app

from .conftest import SAMPLES

runner = CliRunner()
AREA = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[-69.8, 48.3], [-69.2, 48.3], [-69.2, 48.7], [-69.8, 48.7], [-69.8, 48.3]]]}},
    {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[-80.3, 32.9], [-79.7, 32.9], [-79.7, 33.3], [-80.3, 33.3], [-80.3, 32.9]]]}}]}
S2 = "S2A_MSIL1C_20170729_T19UDP_900m"
L8 = "LC08_L1TP_016037_20170813_20170814_01_RT_900m"


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def _order(tmp_path: Path, inputs: Path, db: Path, products: str = "SR,NDVI,BAP") -> int:
    area = tmp_path / "area.geojson"
    area.write_text(json.dumps(AREA))
    code, output = run("order", "create", "--area", str(area), "--from", "2017-07-01", "--to", "2017-08-31",
                       "--products", products, "--inputs", str(inputs), "--out", str(tmp_path / "out"),
                       "--resolution", "900", "--db", str(db))
    assert code == 0, output
    assert "2 scene(s), 3 tile(s) (17SNS, 17SPS, 19UDP)" in output
    return int(output.split()[-1])


def _tasks(db: Path) -> list[tuple[str, str, int, str, str | None]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT key, state, attempts, log, failed_input FROM tasks ORDER BY id").fetchall()


def test_order_runs_on_a_local_cluster_and_a_rerun_runs_nothing(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in (S2, L8):
        shutil.copytree(SAMPLES / name, inputs / name)
    db = tmp_path / "orders.sqlite"
    order = _order(tmp_path, inputs, db)
    code, output = run("order", "run", str(order), "--workers", "2", "--db", str(db))
    assert code == 0, output
    assert "9 done, 0 failed; 9 task(s) ran now" in output
    assert all(state == "done" and attempts == 1 for _, state, attempts, _, _ in _tasks(db))
    out = tmp_path / "out"
    ard = list(pystac.Collection.from_file(str(out / "ard" / "collection.json")).get_items(recursive=True))
    ndvi = list(pystac.Collection.from_file(str(out / "products" / "collection.json")).get_items(recursive=True))
    bap = list(pystac.Collection.from_file(str(out / "composites" / "collection.json")).get_items(recursive=True))
    # the Sentinel-2 product makes its own tile only: its neighbours' strips come from their own products
    assert len(ard) == 3 and len(ndvi) == 3 and {i.properties["mgrs:tile"] for i in ard} == {
        "17SNS", "17SPS", "19UDP"}
    # one composite per tile and month with observations: July for Sentinel-2, August for Landsat
    assert len(bap) == 3
    assert {i.properties["mgrs:tile"]: i.id.split(".")[2][:6] for i in bap} == {
        "17SNS": "201708", "17SPS": "201708", "19UDP": "201707"}
    # the order's ARD equals musyq ard run directly
    direct = tmp_path / "direct"
    assert run("ard", str(inputs / S2), "--out", str(direct), "--resolution", "900", "--tile", "19UDP")[0] == 0
    [mine] = [i for i in ard if i.properties["mgrs:tile"] == "19UDP"]
    theirs = next(direct.glob("19UDP/*/*.SR.tif"))
    with rasterio.open(mine.assets["SR"].get_absolute_href()) as a, rasterio.open(theirs) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.tif")}
    code, output = run("order", "run", str(order), "--workers", "2", "--db", str(db))
    assert code == 0 and "0 task(s) ran now" in output
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    code, output = run("order", "list", "--db", str(db))
    assert code == 0 and "9/0/9" in output


def test_a_truncated_input_fails_its_own_tasks_and_the_rest_goes_on(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in (S2, L8):
        shutil.copytree(SAMPLES / name, inputs / name)
    band = next((inputs / L8).glob("*_B4.TIF"))
    band.write_bytes(band.read_bytes()[: band.stat().st_size // 3])
    db = tmp_path / "orders.sqlite"
    order = _order(tmp_path, inputs, db, "SR,NDVI")
    code, output = run("order", "run", str(order), "--workers", "2", "--db", str(db))
    assert code == 1 and "2 done, 4 failed" in output
    assert "failed ard:LC08_L1TP_016037_20170813_20170814_01_RT:17SNS" in output  # told as it happened
    assert "failed product:LC08_L1TP_016037_20170813_20170814_01_RT:17SNS: not run: ard:LC08" in output
    tasks = _tasks(db)
    for key, state, _, log, failed_input in tasks:
        if key.startswith("ard:LC08"):
            assert state == "failed" and band.name in log, (key, log)
        elif key.startswith("product:LC08"):
            assert state == "failed" and log.startswith("not run: ard:LC08")
        else:
            assert state == "done", key
    code, output = run("order", "show", str(order), "--db", str(db))
    assert code == 0 and band.name in output and "2 done, 4 failed" in output


@pytest.mark.parametrize(("change", "message"), [
    ({"--from": "2017-09-01"}, "ends (2017-08-31) before it starts (2017-09-01)"),
    ({"--products": "SR,NVDI"}, "'NVDI' is not an index"),
    ({"--area": "10,50,5,52"}, "empty or impossible box"),
    ({"--area": "10,86,11,87"}, "touches no Sentinel-2 tile"),
    ({"--area": "0,0,1,1"}, "no Level-1 scene"),
    ({"--sensors": "S9X"}, "unknown sensor 'S9X'"),
])
def test_bad_orders_are_named_and_nothing_is_stored(tmp_path: Path, change: dict[str, str], message: str) -> None:
    db = tmp_path / "orders.sqlite"
    options = {"--area": "-69.8,48.3,-69.2,48.7", "--from": "2017-07-01", "--to": "2017-08-31", "--products": "SR",
               "--inputs": str(SAMPLES), "--out": str(tmp_path / "out"), "--db": str(db)} | change
    code, output = run("order", "create", *[part for item in options.items() for part in item])
    assert code == 1 and message in output, output
    assert not db.exists() or not _orders_in(db)


def _orders_in(db: Path) -> list[tuple[int]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT id FROM orders").fetchall()


def test_a_shapefile_without_a_crs_is_refused(tmp_path: Path) -> None:
    import pyogrio
    import shapely

    shapefile = tmp_path / "area.shp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pyogrio warns that the file will have no CRS: the point
        pyogrio.raw.write(shapefile, np.array([shapely.to_wkb(shapely.box(-69.8, 48.3, -69.2, 48.7))], dtype=object),
                          [], fields=[], geometry_type="Polygon", crs=None, driver="ESRI Shapefile")
    code, output = run("order", "create", "--area", str(shapefile), "--from", "2017-07-01", "--to", "2017-08-31",
                       "--inputs", str(SAMPLES), "--out", str(tmp_path / "out"), "--db", str(tmp_path / "o.sqlite"))
    assert code == 1 and "has no coordinate reference system" in output, output


def _wait_for(db: Path, condition, timeout: float = 240.0) -> list[tuple[str, str, int, str, str | None]]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                tasks = _tasks(db)
            except sqlite3.OperationalError:  # the schema is being created
                tasks = []
            if tasks and condition(tasks):
                return tasks
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting on {db}")


def _prepared(tmp_path: Path) -> tuple[Path, int]:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in (S2, L8):
        shutil.copytree(SAMPLES / name, inputs / name)
    db = tmp_path / "orders.sqlite"
    return db, _order(tmp_path, inputs, db, "SR,NDVI")


def test_a_separate_scheduler_and_workers_and_a_worker_killed_mid_order(tmp_path: Path) -> None:
    """`dask scheduler` and two `dask worker` processes on loopback (the scheduler lets the client see a lost
    worker): one worker is killed while it runs a task; that task runs again and the order completes."""
    db, order = _prepared(tmp_path)
    address_file = tmp_path / "scheduler.json"
    bin_dir = Path(sys.executable).parent
    environment = os.environ | {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    processes = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--scheduler-file", str(address_file), "--no-dashboard"], env=environment,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(100):
            if address_file.exists() and address_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(address_file.read_text())["address"]
        workers = [subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                     "--no-nanny", "--no-dashboard"], env=environment, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        processes += workers
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            pids = client.run(os.getpid)  # worker address -> process id
            runner_process = subprocess.Popen([str(bin_dir / "musyq"), "order", "run", str(order), "--scheduler",
                                               address, "--db", str(db)], stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True)
            busy: list[str] = []
            deadline = time.monotonic() + 240
            while not busy and time.monotonic() < deadline:  # a worker executing a task (one thread each)
                busy = [worker for worker, keys in client.processing().items() if keys]
                time.sleep(0.05)
            assert busy, "no task started"
            os.kill(pids[busy[0]], signal.SIGKILL)
        output, _ = runner_process.communicate(timeout=600)
        assert runner_process.returncode == 0, output
        tasks = _tasks(db)
        assert all(state == "done" for _, state, _, _, _ in tasks), tasks
        again = [key for key, _, attempts, _, _ in tasks if attempts == 2]
        assert again, tasks  # the killed worker's task ran a second time
        assert "1 retried" in " ".join(output.split()) or "2 retried" in " ".join(output.split())
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_a_killed_run_resumes_with_only_the_unfinished_tasks(tmp_path: Path) -> None:
    db, order = _prepared(tmp_path)
    bin_dir = Path(sys.executable).parent
    first = subprocess.Popen([str(bin_dir / "musyq"), "order", "run", str(order), "--workers", "2", "--db", str(db)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        before = _wait_for(db, lambda tasks: sum(t[1] == "done" for t in tasks) >= 2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the run and its cluster's worker processes
        first.wait()
    done = sum(t[1] == "done" for t in _tasks(db))
    assert done >= sum(t[1] == "done" for t in before) and done < len(before)
    code, output = run("order", "run", str(order), "--workers", "2", "--db", str(db))
    assert code == 0, output
    assert f"{len(before) - done} task(s) ran now" in output
    assert all(state == "done" for _, state, _, _, _ in _tasks(db))


PLATFORMS = {S2: "sentinel-2a", L8: "landsat-8"}


def _stac_archive(root: Path) -> Path:
    """The samples as a static STAC catalog: one item per product, its files as assets with relative hrefs,
    and a thumbnail asset that no reader needs (it does not exist: fetching it would fail the order)."""
    from shapely.geometry import mapping

    from musyq.io.readers import open_scene

    catalog = root / "stac"
    links = []
    for name in (S2, L8):
        shutil.copytree(SAMPLES / name, root / "archive" / name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            scene = open_scene(root / "archive" / name)
        outline = scene.footprint.to_crs("EPSG:4326").geom
        assets = {f.stem: {"href": f"../../archive/{name}/{f.name}", "roles": ["data"]}
                  for f in sorted((root / "archive" / name).iterdir())}
        assets["thumbnail"] = {"href": "../../archive/preview.png", "roles": ["thumbnail"]}
        item = {"type": "Feature", "stac_version": "1.1.0", "id": name, "geometry": mapping(outline),
                "bbox": list(outline.bounds), "properties": {"datetime": scene.acquired.isoformat(),
                                                             "platform": PLATFORMS[name]},
                "links": [], "assets": assets}
        (catalog / name).mkdir(parents=True)
        (catalog / name / f"{name}.json").write_text(json.dumps(item))
        links.append({"rel": "item", "href": f"./{name}/{name}.json"})
    (catalog / "catalog.json").write_text(json.dumps({"type": "Catalog", "stac_version": "1.1.0", "id": "l1",
                                                      "description": "samples", "links": links}))
    return catalog / "catalog.json"


def test_an_order_from_a_stac_catalog_over_http_fetches_the_scenes_then_makes_the_same_ard(tmp_path: Path) -> None:
    import http.server
    import threading
    from functools import partial

    catalog = _stac_archive(tmp_path)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/stac/catalog.json"
        area = tmp_path / "area.geojson"
        area.write_text(json.dumps(AREA))
        db = tmp_path / "orders.sqlite"
        code, output = run("order", "create", "--area", str(area), "--from", "2017-07-01", "--to", "2017-08-31",
                           "--products", "SR,NDVI", "--inputs", url, "--out", str(tmp_path / "out"),
                           "--resolution", "900", "--db", str(db))
        assert code == 0, output
        assert "2 scene(s), 3 tile(s) (17SNS, 17SPS, 19UDP); tasks: 2 fetch, 3 ard, 3 product" in output
        order = output.split()[-1]
        code, output = run("order", "run", order, "--workers", "2", "--db", str(db))
        assert code == 0 and "8 done, 0 failed" in output, output
    finally:
        server.shutdown()
        server.server_close()
    out = tmp_path / "out"
    for name in (S2, L8):  # every file of the product, byte for byte, and nothing else
        fetched = sorted(p.name for p in (out / "inputs" / name).iterdir())
        assert fetched == sorted(p.name for p in (SAMPLES / name).iterdir())
        for file in (SAMPLES / name).iterdir():
            assert (out / "inputs" / name / file.name).read_bytes() == file.read_bytes()
    # the ARD of fetched files equals the ARD of the product read in place
    code, output = run("order", "create", "--area", str(tmp_path / "area.geojson"), "--from", "2017-07-01",
                       "--to", "2017-08-31", "--inputs", str(tmp_path / "archive"), "--out", str(tmp_path / "local"),
                       "--resolution", "900", "--db", str(db))
    assert code == 0, output
    assert run("order", "run", output.split()[-1], "--workers", "1", "--db", str(db))[0] == 0
    for here in (out / "ard").glob("*/*/*.SR.tif"):
        there = tmp_path / "local" / "ard" / here.relative_to(out / "ard")
        with rasterio.open(here) as a, rasterio.open(there) as b:
            np.testing.assert_array_equal(a.read(), b.read())
    assert len(list((out / "ard").glob("*/*/*.SR.tif"))) == 3


def test_a_local_stac_catalog_plans_the_products_in_place(tmp_path: Path) -> None:
    catalog = _stac_archive(tmp_path)
    db = tmp_path / "orders.sqlite"
    code, output = run("order", "create", "--area", "-69.8,48.3,-69.2,48.7", "--from", "2017-07-01", "--to",
                       "2017-08-31", "--inputs", str(catalog), "--sensors", "S2A", "--out", str(tmp_path / "out"),
                       "--resolution", "900", "--db", str(db))
    assert code == 0, output
    assert "1 scene(s), 1 tile(s) (19UDP); tasks: 1 ard" in output  # no fetch: the files are local
    with sqlite3.connect(db) as connection:
        params = [json.loads(p) for (p,) in connection.execute("SELECT params FROM tasks")]
    assert {p["path"] for p in params} == {str(tmp_path / "archive" / S2)}


@pytest.mark.parametrize(("document", "message"), [
    ("missing.json", "cannot read the STAC document"),
    ("bad.json", "not a STAC catalog, collection, item collection or item (type 'Polygon')"),
])
def test_a_bad_stac_input_is_named_and_nothing_is_stored(tmp_path: Path, document: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"type": "Polygon", "coordinates": []}))
    db = tmp_path / "orders.sqlite"
    code, output = run("order", "create", "--area", "-69.8,48.3,-69.2,48.7", "--from", "2017-07-01", "--to",
                       "2017-08-31", "--inputs", str(tmp_path / document), "--out", str(tmp_path / "out"),
                       "--db", str(db))
    assert code == 1 and message in output and document in output.replace(" ", ""), output
    assert not db.exists() or not _orders_in(db)


def test_a_stac_api_search_is_asked_for_the_area_and_period_and_its_pages_followed(tmp_path: Path) -> None:
    """A STAC API's ``/search`` over loopback: the planner sends the area's box and the period, and follows the
    ``next`` link of each page (one item a page here) until the last."""
    import http.server
    import threading
    from urllib.parse import parse_qs, urlsplit

    catalog = _stac_archive(tmp_path)
    items = []
    for name in (S2, L8):
        item = json.loads((catalog.parent / name / f"{name}.json").read_text())
        for asset in item["assets"].values():  # the API's items name their files as file:// URLs
            asset["href"] = (catalog.parent / name / asset["href"]).resolve().as_uri()
        items.append(item)
    asked: list[dict[str, list[str]]] = []

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            asked.append(query)
            page = int(query.get("page", ["0"])[0])
            links = [{"rel": "next", "href": f"/search?page={page + 1}"}] if page + 1 < len(items) else []
            body = json.dumps({"type": "FeatureCollection", "features": [items[page]], "links": links}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/geo+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code, output = run("order", "create", "--area", "-80.3,32.9,-69.2,48.7", "--from", "2017-07-01", "--to",
                           "2017-08-31", "--inputs", f"http://127.0.0.1:{server.server_port}/search",
                           "--out", str(tmp_path / "out"), "--resolution", "900", "--db", str(tmp_path / "o.sqlite"))
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, output
    assert "2 scene(s)" in output and "tasks: " in output and "fetch" not in output  # local files: read in place
    assert asked[0]["bbox"] == ["-80.300000,32.900000,-69.200000,48.700000"]
    assert asked[0]["datetime"] == ["2017-07-01T00:00:00Z/2017-08-31T23:59:59.999999Z"]
    assert len(asked) == 2 and asked[1] == {"page": ["1"]}
