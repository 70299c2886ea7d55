"""The ``musyq`` command: one module per subcommand, registered here."""

from __future__ import annotations

import typer

from musyq.cli import ard, bandpass, cloudmodel, composite, coregister, cube, demo, gapfill, info, lut, mask, order, product, reconstruct, validate

app = typer.Typer(
    name="musyq",
    help="Level-1 satellite data to consistent analysis-ready tiles, time series and composites.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("info")(info.info)
app.command("ard")(ard.ard)
app.command("mask")(mask.mask)
app.command("coregister")(coregister.coregister)
app.command("demo")(demo.demo)
app.command("cube")(cube.cube)
app.command("composite")(composite.composite)
app.command("reconstruct")(reconstruct.reconstruct)
app.command("gapfill")(gapfill.gapfill)
app.command("product")(product.product)
app.command("validate")(validate.validate)
app.add_typer(lut.app, name="lut")
app.add_typer(bandpass.app, name="bandpass")
app.add_typer(cloudmodel.app, name="cloudmodel")
app.add_typer(order.app, name="order")

__all__ = ["app"]
