"""``musyq gapfill STACK.tif --dates DATES.txt --out FILLED.tif``: reconstruct any single-variable series."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress

from musyq.cli.options import console, user_errors
from musyq.core.errors import MusyqError
from musyq.timeseries.gapfill import gapfill_stack, read_dates
from musyq.timeseries.reconstruct import ReconstructOptions


def gapfill(
    stack: Path = typer.Argument(..., help="GeoTIFF with one band per date; its nodata (or NaN) marks the gaps."),
    dates: Path = typer.Option(..., "--dates", help="Text file with the bands' dates, one per line (ISO 8601)."),
    out: Path = typer.Option(..., "--out", "-o", help="Filled stack; FLAGS and SIGMA stacks are written beside "
                             "it as OUT.flags.tif (0 not fillable, 1 observed, 2 own series, 3 similar pixels, "
                             "4 along the reference) "
                             "and OUT.sigma.tif."),
    lam: float | None = typer.Option(None, "--lambda", help="Fixed smoothing strength; default: chosen per pixel "
                                     "by generalized cross-validation."),
    step: float = typer.Option(16.0, "--step", help="Days per unit of time in the smoothing penalty."),
    symmetric: bool = typer.Option(False, "--symmetric", help="Outliers on both sides count alike (default: the "
                                   "variable is an index that clouds only lower)."),
    max_gap: float = typer.Option(96.0, "--max-gap", help="Longest gap in days a pixel's own curve may bridge; "
                                  "longer ones are filled from similar pixels."),
    window: int = typer.Option(7, "--window", help="Similar-pixel search radius in pixels (0: none)."),
    smooth_observed: bool = typer.Option(False, "--smooth-observed", help="Replace observed values by the curve "
                                         "too (default: keep them)."),
    reference: Path | None = typer.Option(None, "--reference", help="A coarse series of the same variable (a "
                                          "GeoTIFF, one band per date, any grid) whose curves shape the fit and "
                                          "bridge long gaps."),
    reference_dates: Path | None = typer.Option(None, "--reference-dates", help="The reference's dates, one per "
                                                "line (ISO 8601)."),
) -> None:
    """Fill the gaps of STACK and write the filled stack, a flag stack and an uncertainty stack."""
    with user_errors():
        options = ReconstructOptions(lam=lam, step=step, asymmetric=not symmetric, max_gap=max_gap, window=window,
                                     keep_observed=not smooth_observed)
        days = read_dates(dates)
        if (reference is None) != (reference_dates is None):
            raise MusyqError("--reference and --reference-dates go together")
        guide = (reference, read_dates(reference_dates)) if reference and reference_dates else None
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("gap filling", total=None)
            written = gapfill_stack(stack, days, out, options,
                                    lambda done, total: progress.update(task, completed=done, total=total),
                                    guide)
    for path in written:
        console.print(f"wrote {path}")
