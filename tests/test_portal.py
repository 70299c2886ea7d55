"""The portal as users run it: ``musyq serve`` in its own process on loopback, over a catalog of real ARD (the
Sentinel-2 sample through ``musyq ard``, and the eo-box Landsat 5/7 series of 2009-2010). Its tiles, point
values, series, downloads and expressions are checked against the COGs read directly; bad and hostile requests
get a 4xx with a reason and no file system path; and the page, in headless Chromium, draws tiles, renders an
expression, plots a clicked pixel's series and gives download links (screenshots in test-artifacts/)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer
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
def server(catalog: Path) -> Iterator[str]:
    port = _free_port()
    log = (catalog.parent / "server.log").open("w")
    process = subprocess.Popen([str(Path(sys.executable).parent / "musyq"), "serve", "--catalog", str(catalog),
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
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
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


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
    wanted = np.array([cmap.get("rdylgn")[int(i)][:3] for i in index])
    assert np.abs(expression[valid][:, :3].astype(int) - wanted).max() <= 2
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
