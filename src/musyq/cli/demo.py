"""``musyq demo``: the ARD pipeline on the sample products shipped with musyq."""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from pathlib import Path

import typer

from musyq.cli.ard import produce
from musyq.cli.options import console, user_errors
from musyq.ard.pipeline import ArdOptions
from musyq.io.readers import StackOptions
from musyq.io.report import write_report

# The Sentinel-2 crop has no metadata; its time is the usual overpass, 10:30 local solar time (15:35 UTC).
CROP_TIME = datetime(2016, 1, 12, 15, 35)


def demo(
    out: Path = typer.Option(Path("musyq-demo"), "--out", "-o", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo tiles that are already finished."),
) -> None:
    """Run `musyq ard` on the bundled Sentinel-2 and Landsat samples and write an HTML report."""
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
    console.print(f"[bold green]demo done:[/] {len(items)} tile(s) in {out.resolve()}")
    console.print(f"report:     {report.resolve()}")
    console.print(f"catalogue:  {(out / 'collection.json').resolve()}")
