"""CF-conventions NetCDF4 (HDF5) files of products: one file per tile and period, each product with its
uncertainty and quality bits as variables, on projected x/y coordinates with a CF grid mapping that GDAL, QGIS
and xarray read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5netcdf
import numpy as np
import xarray as xr
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from musyq.io.output import temporary_path

CONVENTIONS = "CF-1.8"
TIME_UNITS = "days since 1970-01-01 00:00:00"


@dataclass(frozen=True, eq=False)
class NetcdfVariable:
    name: str
    values: NDArray[np.generic]  # (y, x)
    long_name: str
    standard_name: str | None
    attributes: dict[str, object]
    flags: dict[int, str] = field(default_factory=dict)  # bit -> meaning, for quality variables


def _days(when: datetime) -> float:
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    moment = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return (moment - epoch).total_seconds() / 86400.0


def _attribute(value: object) -> object:
    """NetCDF attributes hold numbers and text: anything else is stored as JSON-like text."""
    return value if isinstance(value, (int, float, str)) else str(value)


def write_netcdf(path: Path, geobox: GeoBox, start: datetime, end: datetime, variables: Sequence[NetcdfVariable],
                 attributes: dict[str, str]) -> Path:
    """One time step (the period's middle, with CF time bounds) of every variable, written through a temporary
    name."""
    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    middle = _days(start) + 0.5 * (_days(end) - _days(start))
    data = {}
    for variable in variables:
        attrs: dict[str, object] = {"long_name": variable.long_name, "grid_mapping": "spatial_ref"}
        if variable.standard_name:
            attrs["standard_name"] = variable.standard_name
        if variable.flags:
            attrs["flag_masks"] = np.array(list(variable.flags), dtype=variable.values.dtype)
            attrs["flag_meanings"] = " ".join(variable.flags.values())
        else:
            attrs["units"] = "1"
        attrs.update({k.replace(":", "_"): _attribute(v) for k, v in variable.attributes.items()})
        data[variable.name] = xr.DataArray(variable.values[None], dims=("time", "y", "x"), attrs=attrs)
    dataset = xr.Dataset(data, coords={**coords, "time": ("time", [middle], {
        "units": TIME_UNITS, "standard_name": "time", "calendar": "standard", "bounds": "time_bounds"})})
    dataset["time_bounds"] = xr.DataArray([[_days(start), _days(end)]], dims=("time", "bounds"))
    dataset.attrs = {"Conventions": CONVENTIONS, **attributes}
    encoding: dict[str, dict[str, object]] = {"time": {"dtype": "float64"}}
    for variable in variables:
        kind = variable.values.dtype
        fill = np.nan if np.issubdtype(kind, np.floating) else np.iinfo(kind.str).max
        encoding[variable.name] = {"zlib": True, "complevel": 4, "_FillValue": fill,
                                   "chunksizes": (1, min(512, geobox.shape.y), min(512, geobox.shape.x))}
    path.parent.mkdir(parents=True, exist_ok=True)
    target = temporary_path(path)
    try:
        dataset.to_netcdf(target, engine="h5netcdf", encoding=encoding, invalid_netcdf=False)
        os.replace(target, path)
    finally:
        target.unlink(missing_ok=True)
    return path


def netcdf_variables(path: Path) -> set[str]:
    """The variables a finished file holds (empty when there is none)."""
    if not path.exists():
        return set()
    with h5netcdf.File(path, "r") as existing:
        return set(existing.variables)
