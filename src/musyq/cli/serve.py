"""``musyq serve``: the release portal of a catalog folder, on this machine unless told otherwise."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

import typer

from musyq.cli.options import console, user_errors


def serve(
    catalog: Path = typer.Option(..., "--catalog", "-c", help="Folder of musyq STAC collections (ARD, products, "
                                 "composites, ARD+, orders) to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 opens it to the network)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    tile_cache: int = typer.Option(256, "--tile-cache-mb", help="Memory for rendered tiles, in MiB (0: none)."),
    inputs: list[str] = typer.Option([], "--inputs", help="Archive users may order from: folders of Level-1 "
                                     "products or STAC documents; repeat for several. Without it, no orders."),
    db: str | None = typer.Option(None, "--db", help="Order database (SQLAlchemy URL or SQLite file; default "
                                  "~/.local/share/musyq/orders.sqlite)."),
    max_area: float = typer.Option(1.0, "--max-order-area", help="Largest order, in square degrees."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="tcp://HOST:PORT of a Dask scheduler for "
                                         "orders (default: a local cluster per order)."),
    workers: int | None = typer.Option(None, "--workers", help="Local cluster workers for orders."),
) -> None:
    """Serve the web map, pixel series, downloads, band math and orders of CATALOG, with its JSON API under
    /api. Orders write into CATALOG/orders, saved expressions into CATALOG/expressions."""
    import uvicorn

    from musyq.portal.app import OrderSettings, create_app

    # GDAL's block cache otherwise takes up to 5 % of the machine's memory, growing with every tile read:
    # the portal's own tile cache holds what is asked for again
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
    with user_errors():
        orders = OrderSettings(inputs=inputs, db=db, max_area=max_area, scheduler=scheduler, workers=workers) \
            if inputs else None
        app = create_app(catalog, tile_cache, orders)
    _bound_heap_arenas()
    console.print(f"[bold green]musyq portal[/] on http://{host}:{port}/ (API: /api/docs)"
                  + ("; orders from " + ", ".join(inputs) if inputs else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning")


M_ARENA_MAX = -8  # glibc's mallopt parameter
GDAL_CACHE_MB = 32


def _bound_heap_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that finds the heap busy an arena of its own (up to 8 per core): on a loaded
    machine the server's request threads then keep ever more memory. A few arenas keep its footprint flat
    under load; other C libraries are left as they are."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    except OSError:
        return
    if mallopt is not None:
        mallopt(M_ARENA_MAX, arenas)
