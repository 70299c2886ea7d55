"""Ground reference values for validation: plain CSV or GeoJSON points (id, lon, lat, date, value, uncertainty)
and Copernicus GBOV RM7 files read as they come (``;``-separated, ``-999`` no data, one file per plot)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from musyq.core.errors import InputError

GBOV_NAME = re.compile(r"GBOV_RM7_(?P<site>[A-Z0-9]+)_(?P<plot>[A-Z0-9]+_\d+)_")
GBOV_NO_DATA = -999.0
GBOV_METHODS = ("warren", "miller")
GBOV_VARIABLES = ("LAI", "LAIe")


@dataclass(frozen=True)
class GroundValue:
    site: str
    lon: float
    lat: float
    when: datetime  # UTC
    value: float
    uncertainty: float  # one sigma; NaN when the source gives none
    plots: int = 1  # plots of one site and day averaged into this value


@dataclass(frozen=True)
class GroundSet:
    values: list[GroundValue]
    source: str
    dropped: int  # records left out: flagged, empty, or no value


def _time(text: str, path: Path) -> datetime:
    text = text.strip()
    for pattern in ("%Y%m%dT%H%M%SZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(path, f"{text!r} is not a date") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _number(text: object) -> float:
    try:
        value = float(str(text).strip().strip('"'))
    except ValueError:
        return float("nan")
    return float("nan") if value == GBOV_NO_DATA else value


def _gbov(path: Path, method: str, variable: str) -> tuple[list[GroundValue], int]:
    """Total LAI (overstory + understory, where measured) of the processed (version 2.0) rows; rows with a
    quality flag set are dropped."""
    name = GBOV_NAME.search(path.name)
    plot = name.group("plot") if name else path.stem
    suffix = "Warren" if method == "warren" else "Miller"
    values, dropped = [], 0
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle, delimiter=";"):
            if str(row.get("Version", "")).strip() != "2.0":
                continue  # 1.0 rows are the raw acquisitions, empty in the RM7 files
            flags = [_number(row.get(f"{layer}_flag")) for layer in ("up", "down")]
            parts = [(_number(row.get(f"{variable}_{suffix}_{layer}")), _number(row.get(f"{variable}_{suffix}_{layer}_err")))
                     for layer in ("up", "down")]
            measured = [(v, e) for (v, e), flag in zip(parts, flags, strict=True) if np.isfinite(v)]
            if not measured or any(np.isfinite(f) and f != 0 for f in flags):
                dropped += 1
                continue
            total = float(sum(v for v, _ in measured))
            sigma = float(np.sqrt(sum(e**2 for _, e in measured if np.isfinite(e))))
            values.append(GroundValue(plot, _number(row["Lon_IS"]), _number(row["Lat_IS"]),
                                      _time(str(row["TIME_IS"]), path), total, sigma))
    return values, dropped


def _plain_csv(path: Path) -> list[GroundValue]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        reader = csv.DictReader(handle, dialect=csv.Sniffer().sniff(sample, delimiters=",;\t"))
        fields = {f.strip().lower(): f for f in reader.fieldnames or []}
        needed = [k for k in ("lon", "lat", "date", "value") if k not in fields]
        if needed:
            raise InputError(path, f"has no {', '.join(needed)} column (it needs id, lon, lat, date, value and "
                                   f"optionally uncertainty; it has {', '.join(fields.values())})")
        values = []
        for number, row in enumerate(reader, 2):
            value = _number(row[fields["value"]])
            if not np.isfinite(value):
                continue
            site = row[fields["id"]] if "id" in fields else f"row{number}"
            sigma = _number(row[fields["uncertainty"]]) if "uncertainty" in fields else float("nan")
            values.append(GroundValue(site, _number(row[fields["lon"]]), _number(row[fields["lat"]]),
                                      _time(row[fields["date"]], path), value, sigma))
    return values


def _geojson(path: Path) -> list[GroundValue]:
    try:
        features = json.loads(path.read_text())["features"]
    except (ValueError, KeyError) as exc:
        raise InputError(path, f"is not a GeoJSON FeatureCollection ({exc})") from None
    values = []
    for number, feature in enumerate(features):
        geometry, properties = feature.get("geometry") or {}, feature.get("properties") or {}
        if geometry.get("type") != "Point" or "value" not in properties or "date" not in properties:
            raise InputError(path, f"feature {number} is not a Point with value and date properties")
        lon, lat = geometry["coordinates"][:2]
        values.append(GroundValue(str(properties.get("id", number)), float(lon), float(lat),
                                  _time(str(properties["date"]), path), float(properties["value"]),
                                  _number(properties.get("uncertainty", "nan"))))
    return values


def _site_days(values: list[GroundValue]) -> list[GroundValue]:
    """Plots of one site measured on one day as one value: their mean, with the sigma of a mean (their own
    errors and their spread)."""
    groups: dict[tuple[float, float, str], list[GroundValue]] = {}
    for value in values:
        groups.setdefault((round(value.lon, 5), round(value.lat, 5), value.when.date().isoformat()), []).append(value)
    merged = []
    for group in groups.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        numbers = np.array([g.value for g in group])
        errors = np.array([g.uncertainty for g in group])
        own = np.sqrt(np.nanmean(errors**2) / len(group)) if np.isfinite(errors).any() else 0.0
        sigma = float(np.hypot(own, numbers.std(ddof=1) / np.sqrt(len(group))))
        site = group[0].site.rsplit("_", 1)[0] if "_" in group[0].site else group[0].site
        merged.append(GroundValue(site, group[0].lon, group[0].lat, min(g.when for g in group),
                                  float(numbers.mean()), sigma, len(group)))
    return sorted(merged, key=lambda g: (g.when, g.site))


def read_ground(paths: Sequence[Path], method: str = "warren", variable: str = "LAI",
                merge_plots: bool = True) -> GroundSet:
    """Ground values from files or folders (every GBOV RM7 CSV, plain CSV and GeoJSON in them)."""
    if method not in GBOV_METHODS:
        raise InputError(method, f"is not a GBOV method; choose {', '.join(GBOV_METHODS)}")
    if variable not in GBOV_VARIABLES:
        raise InputError(variable, f"is not a GBOV RM7 variable; choose {', '.join(GBOV_VARIABLES)}")
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".geojson", ".json"))
        elif path.exists():
            files.append(path)
        else:
            raise InputError(path, "does not exist")
    values: list[GroundValue] = []
    dropped = 0
    kinds = set()
    for path in files:
        if path.suffix.lower() in (".geojson", ".json"):
            values += _geojson(path)
            kinds.add("GeoJSON")
            continue
        with path.open(encoding="utf-8-sig") as handle:
            header = handle.readline()
        if "GBOV_ID" in header:
            found, left = _gbov(path, method, variable)
            values += found
            dropped += left
            kinds.add(f"GBOV RM7 ({variable} {method})")
        else:
            values += _plain_csv(path)
            kinds.add("CSV")
    if not values:
        raise InputError(", ".join(map(str, paths)), "holds no ground values")
    if merge_plots:
        values = _site_days(values)
    return GroundSet(values, ", ".join(sorted(kinds)), dropped)
