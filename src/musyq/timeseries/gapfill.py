"""Gap filling of a single-variable series a user brings: a GeoTIFF with one band per date, nodata for gaps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox

from musyq.core.errors import InputError
from musyq.io.output import Layer, write_cog
from musyq.timeseries.reconstruct import FLAG_NAMES, Reference, ReconstructOptions, reconstruct
from musyq.timeseries.reference import ReferenceCurves, stack_reference

BLOCK_ROWS = 128


def read_dates(path: Path) -> list[date]:
    """ISO 8601 dates, one per line (blank lines and ``#`` comments ignored)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror})") from None
    dates = []
    for number, line in enumerate(lines, 1):
        text = line.split("#")[0].strip()
        if not text:
            continue
        try:
            dates.append(date.fromisoformat(text[:10]))
        except ValueError:
            raise InputError(path, f"line {number}: {text!r} is not an ISO 8601 date") from None
    if any(b <= a for a, b in zip(dates, dates[1:], strict=False)):
        raise InputError(path, "dates must be strictly increasing (merge same-day layers first)")
    return dates


def sibling(out: Path, layer: str) -> Path:
    """``FILLED.tif`` -> ``FILLED.flags.tif``: the layers written beside the filled stack."""
    return out.with_name(f"{out.stem}.{layer}{out.suffix or '.tif'}")


def _open_stack(stack: Path, dates: list[date], what: str) -> rasterio.DatasetReader:
    """The stack opened, with one band per given date."""
    try:
        source = rasterio.open(stack)
    except rasterio.errors.RasterioIOError:
        raise InputError(stack, "is not a raster GDAL can read") from None
    if source.count != len(dates):
        source.close()
        raise InputError(stack, f"has {source.count} bands but {len(dates)} {what} were given")
    return source


def read_reference(stack: Path, dates: list[date], wanted: np.ndarray) -> ReferenceCurves:
    """A coarse series of the same variable (any grid and projection, one band per date) as curves."""
    with _open_stack(stack, dates, "reference dates") as source:
        if source.crs is None:
            raise InputError(stack, "has no coordinate reference system to place it on the stack's grid")
        values = source.read().astype(np.float32)
        if source.nodata is not None:
            values[values == source.nodata] = np.nan
        geobox = GeoBox((source.height, source.width), source.transform, source.crs)
    days = np.array([d.toordinal() for d in dates], dtype=np.float64)
    return stack_reference(days, values, geobox, wanted, "reference", stack.name)


def gapfill_stack(
    stack: Path, dates: list[date], out: Path, options: ReconstructOptions,
    progress: Callable[[int, int], None] | None = None, reference: tuple[Path, list[date]] | None = None,
) -> tuple[Path, Path, Path]:
    """Write the filled stack, its flag stack and its uncertainty stack; returns their paths. ``reference``, a
    coarse stack of the same variable and its dates, guides the curves (see :mod:`musyq.timeseries.reference`)."""
    with _open_stack(stack, dates, "dates") as source:
        nodata = source.nodata
        geobox = GeoBox((source.height, source.width), source.transform, source.crs)
        days = np.array([d.toordinal() for d in dates], dtype=np.float64)
        curves = read_reference(reference[0], reference[1], days) if reference else None
        height, width = source.height, source.width
        filled = np.full((len(dates), height, width), np.nan, dtype=np.float32)
        sigma = np.full_like(filled, np.nan)
        flags = np.zeros(filled.shape, dtype=np.uint8)
        halo = options.window
        for top in range(0, height, BLOCK_ROWS):
            bottom = min(top + BLOCK_ROWS, height)
            start, stop = max(0, top - halo), min(height, bottom + halo)
            values = source.read(window=((start, stop), (0, width))).astype(np.float64)
            gaps = ~np.isfinite(values)
            if nodata is not None:
                gaps |= values == nodata
            values[gaps] = np.nan
            guidance = None
            if curves is not None:
                sampled = curves.sample(geobox[start:stop, :], "reference")
                guidance = Reference(days, sampled, sampled[None])
            result = reconstruct(days, values[None], (~gaps).astype(np.float64), days, options=options,
                                 reference=guidance)
            inner = slice(top - start, top - start + bottom - top)
            filled[:, top:bottom] = result.values[0][:, inner]
            sigma[:, top:bottom] = result.sigma[0][:, inner]
            flags[:, top:bottom] = result.flag[:, inner]
            if progress is not None:
                progress(bottom, height)
    names = tuple(d.isoformat() for d in dates)
    flag_legend = "; ".join(f"{k} {v}" for k, v in FLAG_NAMES.items())
    write_cog(out, Layer("filled", filled, float("nan"), names), geobox, tags={"musyq:source": stack.name})
    flag_path = write_cog(sibling(out, "flags"), Layer("flags", flags, 255, names, resampling="nearest"), geobox,
                          tags={"musyq:flags": flag_legend})
    sigma_path = write_cog(sibling(out, "sigma"), Layer("sigma", sigma, float("nan"), names), geobox,
                           tags={"musyq:sigma": "one standard deviation of each filled or observed value"})
    return out, flag_path, sigma_path
