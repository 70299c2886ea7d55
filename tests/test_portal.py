"""The portal as users run it: ``musyq serve`` in its own process on loopback, over a catalog of real ARD (the
Sentinel-2 sample through ``musyq ard``, and the eo-box Landsat 5/7 series of 2009-2010), taking orders from the
bundled samples. Its tiles, point values, series, downloads, clips, saved expressions and orders are checked
against the COGs read directly or made by the CLI; bad and hostile requests get a 4xx with a reason and no file
system path; 8 clients for 60 s get no error and the server's memory stays bounded; and the page, in headless
Chromium, draws tiles, renders an expression, plots a clicked pixel's series, draws a box whose clip downloads,
and gives download links (screenshots in test-artifacts/)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
import xarray as xr
from PIL import Image
from pyproj import Transformer
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rio_tiler.colormap import cmap
from rio_tiler.io import Reader
from typer.testing import CliRunner

from musyq.cli import app

from .conftest import SAMPLES
from .series_catalog import write_catalog

S2_ITEM = "S2A_MSI.900m.2017210153557.19UDP.001"
POINT = (-69.6, 48.3)  # on the Sentinel-2 sample's tile
MERCATOR = morecantile.tms.get("WebMercatorQuad")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("portal") / "catalog"
    result = CliRunner().invoke(app, ["ard", str(SAMPLES / "S2A_MSIL1C_20170729_T19UDP_900m"), "--out",
                                      str(root / "s2"), "--tile", "19UDP", "--resolution", "900"])
    assert result.exit_code == 0, result.output
    write_catalog(root / "series", "2009-01-01", "2010-12-31")
    return root


@pytest.fixture(scope="module")
def served(catalog: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The portal's process over the catalog, taking orders of the bundled samples."""
    port = _free_port()
    log = (catalog.parent / "server.log").open("w")
    process = subprocess.Popen([str(Path(sys.executable).parent / "musyq"), "serve", "--catalog", str(catalog),
                                "--port", str(port), "--inputs", str(SAMPLES), "--db",
                                str(catalog.parent / "orders.sqlite"), "--workers", "1"],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/collections", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            raise AssertionError((catalog.parent / "server.log").read_text())
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server(served: tuple[str, subprocess.Popen[bytes]]) -> str:
    return served[0]


def _png(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


def test_collections_and_search(server: str, catalog: Path) -> None:
    listed = {c["key"]: c for c in httpx.get(f"{server}/api/collections").json()}
    series_count = len(list((catalog / "series").glob("*/*/*.json")))
    assert listed["s2"]["items"] == 1 and listed["series"]["items"] == series_count > 20
    found = httpx.get(f"{server}/api/collections/series/items",
                      params={"datetime": "2010-01-01/2010-12-31", "limit": 1000}).json()
    assert 0 < len(found) < series_count and all(i["datetime"].startswith("2010") for i in found)
    assert {i["sensor"] for i in found} == {"L5_TM", "L7_ETM"}
    boxed = httpx.get(f"{server}/api/collections/s2/items", params={"bbox": "-70,48,-69,49"}).json()
    assert [i["id"] for i in boxed] == [S2_ITEM]
    assert httpx.get(f"{server}/api/collections/s2/items", params={"bbox": "10,10,11,11"}).json() == []


def test_tiles_equal_the_cog_read_directly(server: str, catalog: Path) -> None:
    tile = MERCATOR.tile(*POINT, 8)
    sr = next((catalog / "s2").glob("19UDP/*/*.SR.tif"))
    with Reader(str(sr)) as source:
        direct = source.tile(tile.x, tile.y, tile.z, indexes=(4, 8), tilesize=256, unscale=True)
    red, nir = (np.ma.filled(direct.array[i].astype(np.float64), np.nan) for i in (0, 1))
    valid = ~np.isnan(red) & ~np.isnan(nir)
    assert valid.mean() > 0.2
    base = f"{server}/api/tiles/s2/{S2_ITEM}/SR/{tile.z}/{tile.x}/{tile.y}.png"
    grey = _png(httpx.get(base, params={"bands": "nir", "rescale": "0,0.5", "colormap": "greys_r"}))
    expected = np.clip(np.floor(nir / 0.5 * 255), 0, 255)  # rio-tiler truncates as it rescales
    colours = np.array([cmap.get("greys_r")[int(v)][:3] for v in expected[valid]])
    assert np.abs(grey[valid][:, :3].astype(int) - colours).max() <= 1
    assert (grey[~valid][:, 3] == 0).all()  # no data is transparent
    rgb = _png(httpx.get(base, params={"bands": "red,green,blue", "rescale": "0,0.3"}))
    np.testing.assert_allclose(rgb[valid][:, 0], np.clip(red[valid] / 0.3 * 255, 0, 255), atol=1)
    # band math: the NDVI expression's tile is the NDVI of the same pixels through the colour map
    expression = _png(httpx.get(f"{server}/api/expression/s2/{S2_ITEM}/SR/{tile.z}/{tile.x}/{tile.y}.png",
                                params={"expression": "(nir - red) / (nir + red)", "rescale": "-1,1",
                                        "colormap": "rdylgn"}))
    ndvi = (nir - red) / (nir + red)
    index = np.clip(np.floor((ndvi[valid] + 1) / 2 * 255), 0, 255).astype(int)
    # the colour of the index or of a neighbour level (the COG's float32 scale moves a ratio at a level's edge)
    closest = np.min([np.abs(expression[valid][:, :3].astype(int) - np.array(
        [cmap.get("rdylgn")[int(np.clip(i + step, 0, 255))][:3] for i in index])).max(axis=1) for step in (-1, 0, 1)],
        axis=0)
    assert closest.max() <= 1
    outside = _png(httpx.get(f"{server}/api/tiles/s2/{S2_ITEM}/SR/8/0/0.png", params={"bands": "nir"}))
    assert (outside[..., 3] == 0).all()
    overlay = _png(httpx.get(f"{server}/api/quality/s2/{S2_ITEM}/{tile.z}/{tile.x}/{tile.y}.png"))
    assert 0 < (overlay[..., 3] > 0).mean() < 1  # clouds and water coloured, clear land transparent


def test_point_values_series_and_downloads(server: str, catalog: Path) -> None:
    sr = next((catalog / "s2").glob("19UDP/*/*.SR.tif"))
    values = httpx.get(f"{server}/api/point/s2/{S2_ITEM}", params={"lon": POINT[0], "lat": POINT[1]}).json()
    with rasterio.open(sr) as source:
        x, y = Transformer.from_crs("EPSG:4326", source.crs, always_xy=True).transform(*POINT)
        row, col = source.index(x, y)
        dn = source.read(8)[row, col]
    assert values["values"]["SR"]["nir"] == pytest.approx(dn * 1e-4)
    assert httpx.get(f"{server}/api/download/s2/{S2_ITEM}/SR").content == sr.read_bytes()
    item = httpx.get(f"{server}/api/collections/s2/items/{S2_ITEM}")
    assert item.json()["id"] == S2_ITEM
    # a pixel's two years of Landsat 5 and 7: every date whose grid holds it, clear and flagged told apart
    first = httpx.get(f"{server}/api/collections/series/items", params={"limit": 1}).json()[0]
    west, south, east, north = first["bbox"]
    lon, lat = (west + east) / 2, (south + north) / 2
    series = httpx.get(f"{server}/api/series", params={"lon": lon, "lat": lat, "collections": "series",
                                                       "band": "red"}).json()["series"]
    assert len(series) > 20 and {p["sensor"] for p in series} == {"L5_TM", "L7_ETM"}
    assert {p["state"] for p in series} == {"observed", "flagged"}
    assert all((p["state"] == "observed") == (p["quality"] == 1) for p in series)
    times = [p["datetime"] for p in series]
    assert times == sorted(times)
    one = series[len(series) // 2]
    sr_file = next((catalog / "series").glob(f"*/{one['item']}/*.SR.tif"))
    with rasterio.open(sr_file) as source:
        x, y = Transformer.from_crs("EPSG:4326", source.crs, always_xy=True).transform(lon, lat)
        row, col = source.index(x, y)
        band = list(source.descriptions).index("red") + 1
        assert one["value"] == pytest.approx(source.read(band)[row, col] * source.scales[band - 1])


BOX = (-69.8, 48.1, -69.4, 48.5)  # on the Sentinel-2 sample's tile


def test_clips_as_geotiff_and_netcdf(server: str, catalog: Path, tmp_path: Path) -> None:
    sr = next((catalog / "s2").glob("19UDP/*/*.SR.tif"))
    query = {"bbox": ",".join(map(str, BOX))}
    tif = httpx.get(f"{server}/api/clip/s2/{S2_ITEM}/SR", params=query)
    assert tif.status_code == 200 and tif.headers["content-disposition"].endswith('.SR.clip.tif"')
    with rasterio.open(sr) as source, rasterio.MemoryFile(tif.content) as memory, memory.open() as clip:
        # the COG's own grid cut at whole pixels, covering the box
        col, row = ~source.transform * (clip.transform.c, clip.transform.f)
        assert col == round(col) and row == round(row) and clip.crs == source.crs
        window = Window(round(col), round(row), clip.width, clip.height)
        np.testing.assert_array_equal(clip.read(), source.read(window=window))
        assert clip.scales == source.scales and clip.descriptions == source.descriptions
        west, south, east, north = transform_bounds(source.crs, "EPSG:4326", *clip.bounds)
        assert west <= BOX[0] and south <= BOX[1] and east >= BOX[2] and north >= BOX[3]
        assert clip.width * source.res[0] < (BOX[2] - BOX[0]) * 111e3 * 0.67 + 3 * source.res[0]
        nir = source.read(list(source.descriptions).index("nir") + 1, window=window)
        whole = source.shape
    netcdf = httpx.get(f"{server}/api/clip/s2/{S2_ITEM}/SR", params={**query, "format": "nc"})
    assert netcdf.status_code == 200
    (tmp_path / "clip.nc").write_bytes(netcdf.content)
    with xr.open_dataset(tmp_path / "clip.nc", engine="h5netcdf") as data:
        expected = np.where(nir == 0, np.nan, nir * 1e-4)
        np.testing.assert_allclose(data["nir"].values[0], expected, rtol=1e-6)
        assert data["nir"].attrs["grid_mapping"] == "spatial_ref" and data.attrs["source"] == S2_ITEM
    full = httpx.get(f"{server}/api/clip/s2/{S2_ITEM}/MASK", params={"format": "nc"})
    (tmp_path / "mask.nc").write_bytes(full.content)
    with xr.open_dataset(tmp_path / "mask.nc", engine="h5netcdf", mask_and_scale=False) as data:
        codes = next(iter(data.data_vars.values()))
        assert codes.shape[1:] == whole and codes.dtype == np.uint8  # class codes stay integers
    for params, reason in (({"format": "exe"}, "not one of tif, nc"), ({"bbox": "10,10,11,11"}, "does not meet"),
                           ({"bbox": "1,2,3"}, "four numbers")):
        refused = httpx.get(f"{server}/api/clip/s2/{S2_ITEM}/SR", params=params)
        assert refused.status_code == 400 and reason in refused.json()["detail"], refused.text


def test_an_expression_saved_as_a_product(server: str, catalog: Path) -> None:
    saved = httpx.post(f"{server}/api/expression/save", timeout=120, json={
        "collection": "s2", "item": S2_ITEM, "expression": "(nir - red) / (nir + red)", "name": "ndvi_saved"})
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"collection": "expressions", "item": f"{S2_ITEM}.ndvi_saved", "asset": "ndvi_saved",
                            "expression": "(nir - red) / (nir + red)"}
    made = next((catalog / "expressions").glob(f"19UDP/*/{S2_ITEM}.ndvi_saved.tif"))
    sr = next((catalog / "s2").glob("19UDP/*/*.SR.tif"))
    with rasterio.open(sr) as source, rasterio.open(sr.with_name(sr.name.replace(".SR.", ".MASK."))) as mask:
        names = list(source.descriptions)
        red, nir = (source.read(names.index(b) + 1).astype(np.float64) * 1e-4 for b in ("red", "nir"))
        usable = np.isin(mask.read(1), (1, 2)) & (red > 0) & (nir > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
    with rasterio.open(made) as product:
        value = product.read(1)
    assert usable.mean() > 0.2
    np.testing.assert_allclose(value[usable], ndvi[usable], atol=1e-6)
    assert np.isnan(value[~usable]).all()  # clouds, shadow, snow and fill are not band math's pixels
    found = httpx.get(f"{server}/api/collections/expressions/items").json()
    assert f"{S2_ITEM}.ndvi_saved" in [i["id"] for i in found]
    tile = MERCATOR.tile(*POINT, 8)
    drawn = _png(httpx.get(f"{server}/api/tiles/expressions/{S2_ITEM}.ndvi_saved/ndvi_saved/{tile.z}/{tile.x}/"
                           f"{tile.y}.png", params={"rescale": "-1,1", "colormap": "rdylgn"}))
    assert (drawn[..., 3] > 0).mean() > 0.2
    for body, reason in (({"name": "1st"}, "must be a letter"), ({"expression": "red.__class__"}, "attributes"),
                         ({"asset": "MASK"}, "asset SR")):
        request = {"collection": "s2", "item": S2_ITEM, "expression": "nir - red", "name": "fine", **body}
        refused = httpx.post(f"{server}/api/expression/save", json=request)
        assert refused.status_code == 400 and reason in refused.json()["detail"], refused.text


ORDER = {"bbox": [-70.0, 48.0, -69.2, 48.6], "start": "2017-07-01", "end": "2017-08-31", "products": ["SR", "NDVI"],
         "resolution": 900}


def test_an_order_placed_from_the_portal_runs_and_its_tiles_appear(server: str, catalog: Path) -> None:
    placed = httpx.post(f"{server}/api/orders", json=ORDER, timeout=120)
    assert placed.status_code == 201, placed.text
    assert placed.json() | {"id": 0} == {"id": 0, "scenes": 1, "tiles": ["19UDP"], "tasks": {"ard": 1, "product": 1},
                                         "skipped": 0}
    order_id = placed.json()["id"]
    deadline = time.monotonic() + 600
    while (status := httpx.get(f"{server}/api/orders/{order_id}").json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status["state"] == "done" and status["counts"] == {"done": 2}, status
    assert order_id in [o["id"] for o in httpx.get(f"{server}/api/orders").json()]
    ard = f"{status['collection']}.ard"
    while ard not in [c["key"] for c in httpx.get(f"{server}/api/collections").json()]:
        assert time.monotonic() < deadline
        time.sleep(1)
    [item] = httpx.get(f"{server}/api/collections/{ard}/items").json()
    assert item["id"] == S2_ITEM  # the same product at the same pixel size: the same tile as `musyq ard` made
    ordered = next((catalog / "orders").glob(f"*/ard/19UDP/*/{S2_ITEM}.SR.tif"))
    direct = next((catalog / "s2").glob("19UDP/*/*.SR.tif"))
    with rasterio.open(ordered) as made, rasterio.open(direct) as reference:
        np.testing.assert_array_equal(made.read(), reference.read())
    tile = MERCATOR.tile(*POINT, 8)
    assert (_png(httpx.get(f"{server}/api/tiles/{ard}/{S2_ITEM}/SR/{tile.z}/{tile.x}/{tile.y}.png",
                           params={"bands": "nir"}))[..., 3] > 0).mean() > 0.2
    products = f"{status['collection']}.products"
    assert [i["id"] for i in httpx.get(f"{server}/api/collections/{products}/items").json()] == [f"{S2_ITEM}.NDVI"]


@pytest.mark.parametrize(("change", "status", "reason"), [
    ({"bbox": [-80, 40, -60, 50]}, 400, "square degrees"),
    ({"start": "2017-09-01"}, 400, "ends (2017-08-31) before it starts"),
    ({"products": ["SR", "NOTANINDEX"]}, 400, "'NOTANINDEX'"),
    ({"start": "2019-07-01", "end": "2019-08-31"}, 400, "no Level-1 scene in <archive>"),
    ({"resolution": 1}, 400, "outside 10..1000"),
    ({"bbox": [-70, 48, -69]}, 422, "bbox"),
    ({"start": "yesterday"}, 422, "start"),
])
def test_bad_orders_are_refused(server: str, change: dict[str, Any], status: int, reason: str) -> None:
    response = httpx.post(f"{server}/api/orders", json=ORDER | change, timeout=60)
    assert response.status_code == status and reason in response.text, response.text
    assert "/tmp" not in response.text and str(SAMPLES) not in response.text


def test_orders_only_where_the_portal_takes_them(server: str, catalog: Path) -> None:
    from fastapi.testclient import TestClient

    from musyq.portal.app import create_app

    assert httpx.get(f"{server}/api/orders/99999").status_code == 404
    with TestClient(create_app(catalog)) as client:
        refused = client.post("/api/orders", json=ORDER)
        assert refused.status_code == 404 and "takes no orders" in refused.json()["detail"]
        assert client.get("/api/config").json()["orders"] is False


def _rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) * 1024


def test_eight_clients_for_a_minute(served: tuple[str, subprocess.Popen[bytes]], catalog: Path) -> None:
    server, process = served
    first = httpx.get(f"{server}/api/collections/series/items", params={"limit": 1}).json()[0]
    lon, lat = (first["bbox"][0] + first["bbox"][2]) / 2, (first["bbox"][1] + first["bbox"][3]) / 2
    urls = [f"{server}/api/tiles/s2/{S2_ITEM}/SR/{t.z}/{t.x}/{t.y}.png?bands=red,green,blue&rescale=0,0.3"
            for z in (7, 8, 9, 10) for t in MERCATOR.tiles(*BOX, [z])]
    urls += [f"{server}/api/expression/s2/{S2_ITEM}/SR/{t.z}/{t.x}/{t.y}.png?expression=nir%2Fred" for t in
             MERCATOR.tiles(*BOX, [9])]
    urls += [f"{server}/api/point/s2/{S2_ITEM}?lon={POINT[0]}&lat={POINT[1]}",
             f"{server}/api/series?lon={lon}&lat={lat}&collections=series&band=red",
             f"{server}/api/collections/series/items?limit=50"]
    failures: list[str] = []
    counts: list[int] = []

    def client(offset: int, seconds: float) -> None:
        done = 0
        with httpx.Client(timeout=60) as session:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                response = session.get(urls[(offset + done) % len(urls)])
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:100]}")
                done += 1
        counts.append(done)

    def load(seconds: float) -> None:
        threads = [threading.Thread(target=client, args=(7 * i, seconds)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    with httpx.Client(timeout=60) as session:  # every answer made once, however slow the machine
        for url in urls:
            session.get(url)
    load(15)  # warm: every file opened, the tile cache filled
    warm = _rss(process.pid)
    counts.clear()
    samples: list[int] = []

    def sample() -> None:
        for _ in range(12):
            samples.append(_rss(process.pid))
            time.sleep(5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    load(60)
    sampler.join()
    grown = _rss(process.pid) - warm
    assert not failures, failures[:5]
    assert sum(counts) > 8 * 60  # more than one answer a second per client
    assert grown < 100 * 2**20, (f"the server grew by {grown / 2**20:.0f} MiB in a minute of load (every 5 s: "
                                 f"{[round((x - warm) / 2**20) for x in samples]} MiB)")
    assert process.poll() is None


@pytest.mark.parametrize(("path", "status", "reason"), [
    ("/api/download/s2/..%2F..%2F..%2Fetc%2Fpasswd/SR", 404, "Not Found"),  # no route takes the slashes
    ("/api/download/s2/%2Fetc%2Fpasswd/SR", 404, "Not Found"),
    ("/api/download/..%2Fs2/" + S2_ITEM + "/SR", 404, "Not Found"),
    ("/api/download/s2/" + S2_ITEM + "/..%2F..%2Fcollection.json", 404, "Not Found"),
    ("/api/download/s2/..%252F..%252Fetc/SR", 404, "no item '..%2F..%2Fetc'"),  # encoded twice: a name
    ("/api/download/s2/..", 404, "Not Found"),
    ("/api/download/s2/" + S2_ITEM + "/%2E%2E", 404, "has no asset '..'"),
    ("/api/download/s2/" + S2_ITEM + "/secret", 404, "has no asset"),
    ("/api/collections/s2/items?bbox=10,50,5,52", 400, "empty or outside"),
    ("/api/collections/s2/items?bbox=a,b,c,d", 400, "four numbers"),
    ("/api/collections/s2/items?datetime=2017-13-45/2018-01-01", 400, "ISO 8601"),
    ("/api/collections/nowhere/items", 404, "no collection 'nowhere'"),
    ("/api/tiles/s2/" + S2_ITEM + "/SR/8/78/88.png?bands=swir99", 400, "has no band 'swir99'"),
    ("/api/tiles/s2/" + S2_ITEM + "/SR/8/78/88.png?rescale=1,0", 400, "MIN < MAX"),
    ("/api/tiles/s2/" + S2_ITEM + "/SR/8/78/88.png?bands=nir&colormap=evil", 400, "unknown colour map"),
    ("/api/tiles/s2/" + S2_ITEM + "/SR/30/0/0.png", 400, "no tile 30/0/0"),
    ("/api/point/s2/" + S2_ITEM + "?lon=10&lat=10", 400, "off the grid"),
    ("/api/point/s2/" + S2_ITEM + "?lon=500&lat=10", 422, "less than or equal to 180"),
])
def test_bad_and_hostile_requests(server: str, catalog: Path, path: str, status: int, reason: str) -> None:
    response = httpx.get(server + path)
    assert response.status_code == status and reason in response.text, (response.status_code, response.text)
    assert str(catalog) not in response.text and "/tmp" not in response.text


@pytest.mark.parametrize("expression", [
    "red.__class__", "__import__('os').system('id')", "lambda: red", "red ** 99999", "9 ** 9 ** 9",
    "abs(" * 30 + "red" + ")" * 30, "-" * 50 + "red", "open('/etc/passwd').read()", "[red for red in nir]", "red[0]",
])
def test_hostile_expressions_are_refused(server: str, expression: str) -> None:
    response = httpx.get(f"{server}/api/expression/s2/{S2_ITEM}/SR/8/78/88.png", params={"expression": expression})
    assert response.status_code == 400 and response.json()["detail"], response.text


def test_a_symlink_out_of_the_catalog_is_not_served(catalog: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from musyq.portal.app import create_app

    secret = tmp_path / "secret.tif"
    secret.write_bytes(b"not yours")
    sr = next((catalog / "s2").glob("19UDP/*/*.SR.tif"))
    moved = sr.with_suffix(".kept")
    os.replace(sr, moved)
    try:
        sr.symlink_to(secret)
        client = TestClient(create_app(catalog))
        response = client.get(f"/api/download/s2/{S2_ITEM}/SR")
        assert response.status_code == 404 and b"not yours" not in response.content
    finally:
        sr.unlink()
        os.replace(moved, sr)


def _outward_address() -> str:
    """This machine's address on its default route (a UDP socket's choice; no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def test_the_server_listens_on_loopback_unless_told(server: str) -> None:
    address = _outward_address()
    if address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    port = server.rsplit(":", 1)[1]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{address}:{port}/api/collections", timeout=5)


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium through its chromedriver (apt install chromium chromium-driver)."""
    import shutil

    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("no chromium and chromedriver (apt install chromium chromium-driver); the API was tested")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, script: str, timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(script))
    except Exception:
        print("page state on timeout:", script[:80], driver.execute_script("return document.getElementById('message').textContent"),
              driver.execute_script("return document.getElementById('inspector').textContent"),
              driver.execute_script("return document.querySelectorAll('#chart circle').length"),
              [e["message"] for e in driver.get_log("browser")][:5])
        driver.save_screenshot(str(ARTIFACTS / "portal-failed.png"))
        raise


# the number of the layer's tiles drawn from URLs with the part given, once every tile of the layer has loaded
LOADED_TILES = "const t = [...document.querySelectorAll('.musyq-layer img')];" \
               "return t.length > 0 && t.every(i => i.complete && i.classList.contains('leaflet-tile-loaded')) && " \
               "t.filter(i => i.naturalWidth === 256 && i.src.includes(arguments[0])).length"


def test_the_page_draws_tiles_plots_a_pixel_series_and_renders_an_expression(server: str, browser: Any,
                                                                             catalog: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/")
    _wait(browser, "return document.querySelectorAll('#collection option').length > 0")
    # other tests of the module may have added collections (saved expressions, orders' outputs) first
    if Select(browser.find_element(By.ID, "collection")).first_selected_option.get_attribute("value") != "s2":
        Select(browser.find_element(By.ID, "collection")).select_by_value("s2")
    assert _wait(browser, LOADED_TILES.replace("arguments[0]", "'/api/tiles/s2/'")) > 0
    browser.save_screenshot(str(ARTIFACTS / "portal-s2-true-colour.png"))
    # the download links the page gives return the files
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")}
    sr = next((catalog / "s2").glob("19UDP/*/*.SR.tif"))
    assert httpx.get(links["SR"]).content == sr.read_bytes()
    assert httpx.get(links["STAC item"]).json()["id"] == S2_ITEM
    # an expression drawn as a layer
    Select(browser.find_element(By.ID, "layer")).select_by_value("expression")
    _wait(browser, "return document.querySelectorAll('.musyq-layer img').length > 0 && "
                   "[...document.querySelectorAll('.musyq-layer img')].every(t => t.src.includes('/api/expression/'))")
    assert _wait(browser, LOADED_TILES.replace("arguments[0]", "'/api/expression/'")) > 0
    browser.save_screenshot(str(ARTIFACTS / "portal-s2-ndvi-expression.png"))
    field = browser.find_element(By.ID, "expression")
    field.clear()
    field.send_keys("red.__class__\n")
    browser.execute_script("document.getElementById('expression').dispatchEvent(new Event('change'))")
    assert "attributes" in _wait(browser, "return document.getElementById('message').textContent")
    # the Landsat series: a click on the map plots the pixel's dates, clear and flagged told apart
    Select(browser.find_element(By.ID, "layer")).select_by_value("rgb")
    Select(browser.find_element(By.ID, "collection")).select_by_value("series")
    # the series has no blue or green band: the page says so and shows one band
    assert "has no green, blue" in _wait(browser, "return document.getElementById('message').textContent")
    _wait(browser, LOADED_TILES.replace("arguments[0]", "'/api/tiles/series/'"))
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "map")).click().perform()
    points = _wait(browser, "const c = document.querySelectorAll('#chart circle'); return c.length > 20 && c.length")
    states = browser.execute_script("return [...document.querySelectorAll('#chart circle')].map(c => c.classList[1])")
    assert len(states) == points and {"observed", "flagged"} <= set(states)
    assert browser.find_elements(By.CSS_SELECTOR, "#inspector table tr")
    browser.save_screenshot(str(ARTIFACTS / "portal-series-click.png"))


def test_the_page_draws_a_box_clips_it_saves_an_expression_and_orders(server: str, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/")
    _wait(browser, "return document.querySelectorAll('#collection option').length > 0")
    Select(browser.find_element(By.ID, "collection")).select_by_value("s2")
    _wait(browser, LOADED_TILES.replace("arguments[0]", "'/api/tiles/s2/'"))
    # a box dragged on the map: its clip downloads as a GeoTIFF of the pixels inside it
    browser.find_element(By.ID, "draw").click()
    ActionChains(browser).move_to_element_with_offset(browser.find_element(By.ID, "map"), -120, -90) \
        .click_and_hold().move_by_offset(240, 180).release().perform()
    text = _wait(browser, "const t = document.getElementById('box').textContent; return t !== 'none' && t")
    west, south, east, north = map(float, text.split(","))
    assert west < east and south < north
    clip = httpx.get(browser.find_element(By.ID, "clip-tif").get_attribute("href"), timeout=60)
    assert clip.status_code == 200
    with rasterio.MemoryFile(clip.content) as memory, memory.open() as data:
        left, bottom, right, top = transform_bounds(data.crs, "EPSG:4326", *data.bounds)
        pixel = 2 * 900 / 111e3 / np.cos(np.radians(north))  # the COG's pixels, at most one beyond each side
        assert left <= west and right >= east and left > west - pixel and right < east + pixel
    assert httpx.get(browser.find_element(By.ID, "clip-nc").get_attribute("href"), timeout=60).status_code == 200
    browser.save_screenshot(str(ARTIFACTS / "portal-box.png"))
    # the expression saved as a product appears as a collection
    Select(browser.find_element(By.ID, "layer")).select_by_value("expression")
    name = browser.find_element(By.ID, "product-name")
    name.clear()
    name.send_keys("page_ndvi")
    browser.find_element(By.ID, "save-expression").click()
    assert "page_ndvi" in _wait(browser, "const t = document.getElementById('message').textContent;"
                                         "return t.startsWith('saved') && t")
    _wait(browser, "return [...document.querySelectorAll('#collection option')].some(o => o.value === 'expressions')")
    # the box ordered: the order is planned and listed with its state
    assert browser.find_element(By.ID, "orders").is_displayed()
    for field, value in (("order-products", "SR"), ("order-resolution", "900")):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    browser.find_element(By.ID, "order").click()
    assert "19UDP" in _wait(browser, "const t = document.getElementById('message').textContent;"
                                     "return t.startsWith('order') && t")
    _wait(browser, "return document.querySelectorAll('#order-list .order').length > 0")
    browser.save_screenshot(str(ARTIFACTS / "portal-order.png"))
