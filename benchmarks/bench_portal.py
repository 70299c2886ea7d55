"""The portal's tile and series latency, side by side with titiler.core serving the same file in the same run.

A full-size 3660 x 3660 SR COG (the Sentinel-2 sample made into 19UDP at 30 m by ``musyq ard``, unless
``--catalog`` names a catalog holding one) is served by ``musyq serve`` and by a titiler.core TilerFactory app
(both uvicorn, one process each, loopback). 8 client threads fetch the same 256 px RGB tiles from each, warm
(every tile fetched once first): median and 95th percentile per server, and the ratio; musyq twice, with its
rendered-tile cache and without it (every tile read, warped and encoded again, from held datasets). Then a
pixel's series of the eo-box Landsat catalog (every date, 2008-2013) through ``/api/series``: the first
request (blocks decoded) and repeated ones.

    pip install titiler.core  # the peer, never a musyq dependency
    python benchmarks/bench_portal.py [--catalog DIR] [--seconds 20]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import morecantile
import rasterio
from pyproj import Transformer

ROOT = Path(__file__).resolve().parents[1]
MUSYQ = str(Path(sys.executable).parent / "musyq")
SAMPLE = ROOT / "src/musyq/data/samples/S2A_MSIL1C_20170729_T19UDP_900m"
CLIENTS = 8
TITILER_APP = textwrap.dedent("""
    from fastapi import FastAPI
    from titiler.core.factory import TilerFactory
    app = FastAPI()
    app.include_router(TilerFactory().router)
""")


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer")


def _tiles(cog: Path, zoom: int) -> list[morecantile.Tile]:
    with rasterio.open(cog) as source:
        to_lonlat = Transformer.from_crs(source.crs, "EPSG:4326", always_xy=True)
        west, south = to_lonlat.transform(source.bounds.left, source.bounds.bottom)
        east, north = to_lonlat.transform(source.bounds.right, source.bounds.top)
    return list(morecantile.tms.get("WebMercatorQuad").tiles(west, south, east, north, [zoom]))


def _load(urls: list[str], seconds: float) -> list[float]:
    """Each client fetches the URLs round and round for ``seconds``; the latencies in ms."""
    def client(offset: int) -> list[float]:
        times = []
        with httpx.Client(timeout=30) as session:
            end, n = time.monotonic() + seconds, offset
            while time.monotonic() < end:
                start = time.perf_counter()
                response = session.get(urls[n % len(urls)])
                times.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, response.text
                n += 1
        return times

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [t for times in pool.map(client, range(0, CLIENTS * 7, 7)) for t in times]


def _figures(name: str, times: list[float]) -> float:
    p95 = statistics.quantiles(times, n=20)[18]
    median = statistics.median(times)
    print(f"{name:>20}: {len(times)} tiles, median {median:6.1f} ms, p95 {p95:6.1f} ms")
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--catalog", type=Path)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        catalog = args.catalog or Path(scratch) / "catalog"
        if args.catalog is None:
            subprocess.run([MUSYQ, "ard", str(SAMPLE), "--out", str(catalog / "ard"), "--tile", "19UDP",
                            "--resolution", "30"], check=True, capture_output=True)
        if not (catalog / "series").exists():
            sys.path.insert(0, str(ROOT))
            from tests.series_catalog import write_catalog

            write_catalog(catalog / "series")
        cog = next(p for p in (catalog / "ard").rglob("*.SR.tif"))
        item, collection = cog.parent.name, "ard"
        with rasterio.open(cog) as source:
            print(f"COG {source.width} x {source.height}, overviews {source.overviews(1)}")
            bands = list(source.descriptions)
        musyq_port, uncached_port, titiler_port = _port(), _port(), _port()
        app_file = Path(scratch) / "titiler_app.py"
        app_file.write_text(TITILER_APP)
        servers = [
            subprocess.Popen([MUSYQ, "serve", "--catalog", str(catalog), "--port", str(musyq_port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([MUSYQ, "serve", "--catalog", str(catalog), "--port", str(uncached_port),
                              "--tile-cache-mb", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([sys.executable, "-m", "uvicorn", "titiler_app:app", "--port", str(titiler_port),
                              "--log-level", "warning", "--app-dir", scratch],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        try:
            _wait(f"http://127.0.0.1:{musyq_port}/api/collections")
            _wait(f"http://127.0.0.1:{uncached_port}/api/collections")
            _wait(f"http://127.0.0.1:{titiler_port}/docs")
            tiles = _tiles(cog, 11)
            rgb = [bands.index(b) + 1 for b in ("red", "green", "blue")]
            path = [f"/api/tiles/{collection}/{item}/SR/{t.z}/{t.x}/{t.y}.png?bands=red,green,blue&rescale=0,0.3"
                    for t in tiles]
            ours = [f"http://127.0.0.1:{musyq_port}{p}" for p in path]
            uncached = [f"http://127.0.0.1:{uncached_port}{p}" for p in path]
            theirs = [f"http://127.0.0.1:{titiler_port}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?url={cog}"
                      + "".join(f"&bidx={b}" for b in rgb) + "&rescale=0,3000" for t in tiles]
            for urls in (ours, uncached, theirs):  # warm: every tile once
                for url in urls:
                    httpx.get(url, timeout=30).raise_for_status()
            print(f"{len(tiles)} tiles at zoom 11, {CLIENTS} clients, {args.seconds:g} s each")
            mine = _figures("musyq", _load(ours, args.seconds))
            drawn = _figures("musyq, no tile cache", _load(uncached, args.seconds))
            peer = _figures("titiler.core", _load(theirs, args.seconds))
            print(f"median ratio musyq / titiler.core: {mine / peer:.2f}; without the tile cache {drawn / peer:.2f}")
            base = f"http://127.0.0.1:{musyq_port}/api"
            first = httpx.get(f"{base}/collections/series/items", params={"limit": 1}).json()[0]
            lon, lat = (first["bbox"][0] + first["bbox"][2]) / 2, (first["bbox"][1] + first["bbox"][3]) / 2
            query = {"lon": lon, "lat": lat, "collections": "series", "band": "red"}
            start = time.perf_counter()
            dates = len(httpx.get(f"{base}/series", params=query, timeout=60).json()["series"])
            print(f"a pixel's series of {dates} dates, first request: {(time.perf_counter() - start) * 1000:.0f} ms")
            times = []
            for _ in range(5):
                start = time.perf_counter()
                httpx.get(f"{base}/series", params=query, timeout=60).raise_for_status()
                times.append((time.perf_counter() - start) * 1000)
            print(f"a pixel's series of {dates} dates, again: median {statistics.median(times):.0f} ms (target < 300 ms)")
        finally:
            for server in servers:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    main()
