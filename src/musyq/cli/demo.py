"""``musyq demo``: the ARD pipeline on the sample products shipped with musyq, then products from it."""

from __future__ import annotations

from datetime import date, datetime
from importlib import resources
from pathlib import Path

import typer

from musyq.cli.ard import produce
from musyq.cli.options import console, user_errors
from musyq.ard.pipeline import ArdOptions
from musyq.io.readers import StackOptions
from musyq.io.report import write_report
from musyq.products.make import ProductOptions, make_products

DEMO_PRODUCTS = ("NDVI", "FVC", "LAI", "FAPAR", "ALBEDO")
# the order: parts of both 900 m samples (samples/demo-area.geojson: Quebec and South Carolina), ARD then NDVI
# and best-available-pixel composites
ORDER_PERIOD = (date(2017, 7, 1), date(2017, 8, 31))
ORDER_PRODUCTS = ("SR", "NDVI", "BAP")
# The Sentinel-2 crop has no metadata; its time is the usual overpass, 10:30 local solar time (15:35 UTC).
CROP_TIME = datetime(2016, 1, 12, 15, 35)


def demo(
    out: Path = typer.Option(Path("musyq-demo"), "--out", "-o", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo tiles that are already finished."),
) -> None:
    """Run `musyq ard` on the bundled Sentinel-2 and Landsat samples, write an HTML report, make NDVI, FVC,
    LAI, FAPAR and albedo with their uncertainty (COG + STAC and NetCDF) in OUT/products, then run an order of
    ARD, NDVI and composites of the 900 m samples on a local Dask cluster (OUT/order, OUT/orders.sqlite)."""
    samples = Path(str(resources.files("musyq").joinpath("data", "samples")))
    runs = [
        ([samples / "S2A_MSIL1C_20170729_T19UDP_900m"], ArdOptions(resolution=900, overwrite=overwrite), None),
        ([samples / "LC08_L1TP_016037_20170813_20170814_01_RT_900m"], ArdOptions(resolution=900, overwrite=overwrite),
         None),
        ([samples / "S2A_20160112_T18SVG_crop"], ArdOptions(resolution=30, tiles=("18SVG",), overwrite=overwrite),
         StackOptions(sensor="S2A_MSI", acquired=CROP_TIME)),
    ]
    results = []
    with user_errors():
        for inputs, options, stack in runs:
            results += produce(inputs, out, options, stack)
        items = sorted({r.item_path for r in results if r.item_path.exists()})
        report = write_report(out, items)
        products = make_products(DEMO_PRODUCTS, [out], out / "products",
                                 ProductOptions(formats=("cog", "netcdf"), overwrite=overwrite))
    console.print(f"[bold green]demo done:[/] {len(items)} tile(s) in {out.resolve()}")
    console.print(f"report:     {report.resolve()}")
    console.print(f"catalogue:  {(out / 'collection.json').resolve()}")
    console.print(f"products:   {len(products)} file(s), {(out / 'products' / 'collection.json').resolve()}")
    _order(out, samples)


def _order(out: Path, samples: Path) -> None:
    """Place the demo order once and run it; a rerun finds it done and runs nothing."""
    from musyq.cli.order import print_plan, run_with_progress
    from musyq.production.area import read_area
    from musyq.production.orders import place_order
    from musyq.production.store import Store

    folder = (out / "order").resolve()
    with user_errors():
        store = Store(out / "orders.sqlite")
        placed = [o.id for o in store.orders() if o.out == str(folder)]
        if placed:
            order_id = placed[-1]
        else:
            order_id, plan = place_order(store, read_area(str(samples / "demo-area.geojson")), *ORDER_PERIOD, ORDER_PRODUCTS, [], 900.0,
                                         [str(samples)], folder)
            print_plan(order_id, plan)
        summary = run_with_progress(store, order_id)
        store.close()
    if summary.failed:
        raise typer.Exit(1)
    console.print(f"order:      {folder / 'ard' / 'collection.json'}, {folder / 'composites' / 'collection.json'}; "
                  f"musyq order show {order_id} --db {(out / 'orders.sqlite').resolve()}")
    console.print(f"portal:     musyq serve --catalog {out.resolve()}  (then open http://127.0.0.1:8000/)")
