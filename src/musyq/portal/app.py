"""The portal's web application: the map page and a JSON API over one catalog folder (tiles, point values,
series, search, downloads and clips, expressions and saving them, orders). Every path parameter is looked up in the catalog's index, never
joined onto a file path; errors answer 4xx with a reason and never a file system path."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from musyq.core.errors import MusyqError
from musyq.io.catalog import as_datetime
from musyq.portal.cache import TileCache
from musyq.portal.catalog import Catalog, Item, NotFound
from musyq.portal.clip import FORMATS, clip
from musyq.portal.orders import OrderDesk, OrderRequest
from musyq.portal.render import (RequestError, band_tile, expression_tile, point_series, pixel_values,
                                 quality_tile)
from musyq.production.store import Store
from musyq.products.expression import parse_expression
from musyq.products.make import expression_product

STATIC = Path(str(files("musyq") / "portal" / "static"))
PNG = "image/png"
MAX_ZOOM = 22
MAX_ITEMS = 1000
EXPRESSIONS_FOLDER = "expressions"  # inside the catalog
TILE_HEADERS = {"Cache-Control": "public, max-age=3600"}


class SaveExpression(BaseModel):
    collection: str = Field(max_length=200)
    item: str = Field(max_length=200)
    asset: str = Field("SR", max_length=50)
    expression: str = Field(max_length=1000)
    name: str = Field(max_length=32)


class NewOrder(BaseModel):
    bbox: tuple[float, float, float, float] = Field(description="W, S, E, N in degrees")
    start: date
    end: date
    products: list[str] = Field(min_length=1, max_length=20)
    sensors: list[str] = Field(default_factory=list, max_length=20)
    resolution: float = 30.0


class OrderSettings(BaseModel):
    """Where the portal's orders come from and run: the archive of Level-1 inputs (folders or STAC documents
    the server chose; no request names one), the order database, the Dask scheduler."""

    inputs: list[str]
    db: str | None = None
    max_area: float = 1.0  # square degrees
    scheduler: str | None = None
    workers: int | None = None


def _stretch(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise RequestError(f"rescale takes two numbers, MIN,MAX, not {text!r}") from None
    if not low < high:
        raise RequestError(f"rescale needs MIN < MAX, not {text!r}")
    return low, high


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        raise RequestError(f"bbox takes four numbers, W,S,E,N in degrees, not {text!r}") from None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise RequestError(f"bbox {text!r} is empty or outside -180..180, -90..90")
    return west, south, east, north


def _period(text: str) -> tuple[datetime, datetime]:
    first, _, last = text.partition("/")
    try:
        return as_datetime(first or "0001-01-01"), as_datetime(last or "9999-12-31", end=True)
    except MusyqError:
        raise RequestError(f"datetime takes START/END in ISO 8601, not {text!r}") from None


def _tile_xyz(z: int, x: int, y: int) -> None:
    if not 0 <= z <= MAX_ZOOM or not (0 <= x < 2**z and 0 <= y < 2**z):
        raise RequestError(f"no tile {z}/{x}/{y}")


def _summary(item: Item) -> dict[str, Any]:
    return {"id": item.id, "collection": item.collection, "datetime": item.datetime.isoformat(),
            "bbox": item.bbox, "tile": item.tile, "sensor": item.id.split(".")[0],
            "assets": {k: {"bands": a.bands, "roles": a.roles, "type": a.media_type} for k, a in item.assets.items()}}


def create_app(catalog_folder: Path, tile_cache_mb: int = 256, orders: OrderSettings | None = None) -> FastAPI:
    """The portal of the catalog under ``catalog_folder``; it takes orders where ``orders`` says from what."""
    catalog = Catalog(catalog_folder)
    tiles = TileCache(tile_cache_mb * 2**20)
    saving = threading.Lock()  # one collection file, written by one request at a time
    desk = None if orders is None else OrderDesk(Store(orders.db), orders.inputs, catalog.root, orders.max_area,
                                                 orders.scheduler, orders.workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if desk is not None:
            desk.close()

    app = FastAPI(title="musyq portal", version="1", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(MusyqError)
    async def bad_request(request: Request, exc: MusyqError) -> JSONResponse:
        return JSONResponse({"detail": str(exc).replace(str(catalog.root), "<catalog>")}, status_code=400)

    @app.exception_handler(Exception)
    async def failure(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "the server could not answer this request"}, status_code=500)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    def ordering() -> OrderDesk:
        if desk is None:
            raise NotFound("this portal takes no orders (start it with --inputs)")
        return desk

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        """What this portal offers beyond the map: orders and their largest area."""
        return {"orders": desk is not None, "max_order_area": None if desk is None else desk.max_area,
                "clip_formats": list(FORMATS)}

    @app.get("/api/collections")
    def collections() -> list[dict[str, Any]]:
        """Every collection with its item count and period."""
        catalog.refresh()
        answer = []
        for c in catalog.collections.values():
            times = sorted(i.datetime for i in c.items.values())
            answer.append({"key": c.key, "id": c.id, "description": c.description, "items": len(c.items),
                           "start": times[0].isoformat() if times else None,
                           "end": times[-1].isoformat() if times else None})
        return answer

    @app.get("/api/collections/{key}/items")
    def search(key: str, bbox: str | None = None, datetime: str | None = None, tile: str | None = None,
               limit: int = Query(100, ge=1, le=MAX_ITEMS)) -> list[dict[str, Any]]:
        """Items of a collection meeting a box (W,S,E,N), a period (START/END) and a tile, by time."""
        box = _bbox(bbox) if bbox else None
        period = _period(datetime) if datetime else None
        found = []
        for item in sorted(catalog.collection(key).items.values(), key=lambda i: i.datetime):
            if box and not (item.bbox[0] < box[2] and item.bbox[2] > box[0] and item.bbox[1] < box[3]
                            and item.bbox[3] > box[1]):
                continue
            if period and not period[0] <= item.datetime <= period[1]:
                continue
            if tile and item.tile != tile.upper():
                continue
            found.append(_summary(item))
        return found[:limit]

    @app.get("/api/collections/{key}/items/{item_id}")
    def stac_item(key: str, item_id: str) -> FileResponse:
        """The item's STAC JSON, as written."""
        return FileResponse(catalog.item(key, item_id).path, media_type="application/geo+json",
                            filename=f"{item_id}.json")

    @app.get("/api/download/{key}/{item_id}/{asset}")
    def download(key: str, item_id: str, asset: str) -> FileResponse:
        """An asset's file (COG, NetCDF, ...)."""
        found = catalog.asset(key, item_id, asset)
        return FileResponse(found.path, media_type=found.media_type, filename=found.path.name)

    @app.get("/api/clip/{key}/{item_id}/{asset}")
    def clip_download(key: str, item_id: str, asset: str, bbox: str | None = None,
                      format: str = "tif") -> FileResponse:
        """The asset's pixels in a box (W,S,E,N in degrees; all of them without one) as a GeoTIFF or a CF
        NetCDF of physical values."""
        item = catalog.item(key, item_id)
        found = catalog.asset(key, item_id, asset)
        box = _bbox(bbox) if bbox else None
        folder = Path(tempfile.mkdtemp(prefix="musyq-clip-"))
        try:
            path = clip(item, found, box, format, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileResponse(path, media_type=FORMATS[format], filename=path.name,
                            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))

    @app.get("/api/tiles/{key}/{item_id}/{asset}/{z}/{x}/{y}.png", response_class=Response)
    def tile(key: str, item_id: str, asset: str, z: int, x: int, y: int, bands: str = "1",
             rescale: str = "0,1", colormap: str | None = None) -> Response:
        """A 256 px web-mercator tile of one band (with a colour map) or three (as RGB)."""
        _tile_xyz(z, x, y)
        names = [b.strip() for b in bands.split(",") if b.strip()]
        found, stretch = catalog.asset(key, item_id, asset), _stretch(rescale)
        png = tiles.get(found.path, ("band", tuple(names), z, x, y, stretch, colormap),
                        lambda: band_tile(found, names, x, y, z, stretch, colormap))
        return Response(png, media_type=PNG, headers=TILE_HEADERS)

    @app.get("/api/quality/{key}/{item_id}/{z}/{x}/{y}.png", response_class=Response)
    def quality(key: str, item_id: str, z: int, x: int, y: int) -> Response:
        """The quality codes as an overlay: water, shadow, snow and cloud coloured, clear transparent."""
        _tile_xyz(z, x, y)
        found = catalog.asset(key, item_id, "MASK")
        png = tiles.get(found.path, ("quality", z, x, y), lambda: quality_tile(found, x, y, z))
        return Response(png, media_type=PNG, headers=TILE_HEADERS)

    @app.get("/api/expression/{key}/{item_id}/{asset}/{z}/{x}/{y}.png", response_class=Response)
    def expression_layer(key: str, item_id: str, asset: str, z: int, x: int, y: int, expression: str,
                         rescale: str = "-1,1", colormap: str = "rdylgn") -> Response:
        """A band-math expression of the asset's bands, evaluated on the tile and drawn with a colour map."""
        _tile_xyz(z, x, y)
        found = catalog.asset(key, item_id, asset)
        checked, stretch = parse_expression(expression, found.bands), _stretch(rescale)
        png = tiles.get(found.path, ("expression", expression, z, x, y, stretch, colormap),
                        lambda: expression_tile(found, checked, x, y, z, stretch, colormap))
        return Response(png, media_type=PNG, headers=TILE_HEADERS)

    @app.post("/api/expression/save")
    def save_expression(request: SaveExpression) -> dict[str, Any]:
        """Evaluate the expression on the whole item and keep it as a product (COG + STAC) in the catalog's
        ``expressions`` collection."""
        found = catalog.asset(request.collection, request.item, request.asset)
        if request.asset != "SR":
            raise RequestError("expressions are saved from the surface reflectance (asset SR)")
        checked = parse_expression(request.expression, found.bands)
        source = catalog.item(request.collection, request.item)
        with saving:
            saved = expression_product(checked, request.name, source.path, catalog.root / EXPRESSIONS_FOLDER)
        catalog.refresh(force=True)
        return {"collection": EXPRESSIONS_FOLDER, "item": saved.stem, "asset": request.name,
                "expression": request.expression}

    @app.get("/api/expression/check")
    def check_expression(key: str, item_id: str, asset: str, expression: str) -> dict[str, Any]:
        """Whether an expression is one the portal evaluates on the asset, and the bands it reads."""
        found = catalog.asset(key, item_id, asset)
        return {"expression": expression, "bands": parse_expression(expression, found.bands).bands}

    @app.get("/api/point/{key}/{item_id}")
    def point(key: str, item_id: str, lon: float = Query(..., ge=-180, le=180),
              lat: float = Query(..., ge=-90, le=90)) -> dict[str, Any]:
        """Every band of every raster asset of the item at a point."""
        item = catalog.item(key, item_id)
        values = {}
        for asset_key, asset in item.assets.items():
            if asset.media_type.startswith("image/tiff"):
                pixel = pixel_values(asset, lon, lat)
                if pixel is None:
                    raise RequestError(f"({lon}, {lat}) is off the grid of item {item_id!r}")
                values[asset_key] = pixel.values
        return {"item": item_id, "datetime": item.datetime.isoformat(), "lon": lon, "lat": lat, "values": values}

    @app.get("/api/series")
    def series(lon: float = Query(..., ge=-180, le=180), lat: float = Query(..., ge=-90, le=90),
               collections: str = "root", asset: str = "SR", band: str = "nir", tile: str | None = None,
               datetime: str | None = None) -> dict[str, Any]:
        """A pixel's values through time across the collections' items and sensors, each observation marked
        observed (clear), flagged (cloud, shadow, snow, water) or filled (ARD+)."""
        period = _period(datetime) if datetime else None

        def wanted(item: Item) -> bool:
            in_period = period is None or period[0] <= item.datetime <= period[1]
            return in_period and (not tile or item.tile == tile.upper())

        items = [i for key in collections.split(",") for i in catalog.collection(key.strip()).items.values()
                 if wanted(i)]
        points = point_series(items, lon, lat, asset, band)
        return {"lon": lon, "lat": lat, "asset": asset, "band": band,
                "series": [vars(p) for p in points]}

    @app.post("/api/orders", status_code=201)
    def place(request: NewOrder) -> dict[str, Any]:
        """Plan an order of products over a box and a period from the portal's archive, and queue it."""
        return ordering().place(OrderRequest(request.bbox, request.start, request.end, tuple(request.products),
                                             tuple(request.sensors), request.resolution))

    @app.get("/api/orders")
    def order_list() -> list[dict[str, Any]]:
        """The orders placed from this portal."""
        return ordering().orders()

    @app.get("/api/orders/{order_id}")
    def order_status(order_id: int) -> dict[str, Any]:
        """An order's state, its tasks' states and the collection its outputs go to."""
        return ordering().status(order_id)

    return app
