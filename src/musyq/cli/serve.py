"""``musyq serve``: the release portal of a catalog folder, on this machine unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import typer

from musyq.cli.options import console, user_errors


def serve(
    catalog: Path = typer.Option(..., "--catalog", "-c", help="Folder of musyq STAC collections (ARD, products, "
                                 "composites, ARD+, orders) to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 opens it to the network)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
) -> None:
    """Serve the web map, pixel series, downloads and band math of CATALOG, with its JSON API under /api."""
    import uvicorn

    from musyq.portal.app import create_app

    with user_errors():
        app = create_app(catalog)
    console.print(f"[bold green]musyq portal[/] on http://{host}:{port}/ (API: /api/docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
