"""Finding ARD items in musyq catalogs: by tile, period and sensor, across any number of output folders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timezone
from pathlib import Path

import pystac

from musyq.core.errors import InputError, MusyqError, SensorError
from musyq.core.sensors import resolve_sensor_id
from musyq.io.stac import COLLECTION_FILE


def _collection_file(path: Path) -> Path:
    return path / COLLECTION_FILE if path.is_dir() else path


def item_sensor(item: pystac.Item) -> str:
    """The musyq sensor id an item was made from (its id starts with it, or with the sensor's product code)."""
    prefix = item.id.split(".")[0]
    try:
        return resolve_sensor_id(prefix)
    except SensorError:
        return prefix


def as_datetime(value: date | datetime | str, end: bool = False) -> datetime:
    """A period bound in UTC; a bare date means the whole day (its end for ``end``)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value else date.fromisoformat(value)
        except ValueError:
            raise MusyqError(f"{value!r} is not an ISO 8601 date") from None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.max if end else time.min)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def find_items(
    catalogs: Sequence[Path], tile: str, start: date | datetime | str, end: date | datetime | str,
    sensors: Sequence[str] | None = None,
) -> list[pystac.Item]:
    """The items of ``tile`` acquired from ``start`` to ``end`` (inclusive) in the catalogs, oldest first."""
    first, last = as_datetime(start), as_datetime(end, end=True)
    if last < first:
        raise MusyqError(f"the period ends ({last:%Y-%m-%d}) before it starts ({first:%Y-%m-%d})")
    wanted = {resolve_sensor_id(s) for s in sensors} if sensors else None
    found: dict[str, pystac.Item] = {}
    for catalog in catalogs:
        path = _collection_file(Path(catalog))
        if not path.exists():
            raise InputError(catalog, f"holds no {COLLECTION_FILE} (not a musyq output folder)")
        try:
            collection = pystac.Collection.from_file(str(path))
            items = list(collection.get_items(recursive=True))
        except Exception as exc:  # pystac raises many kinds on a broken catalog
            raise InputError(path, f"is not a readable STAC collection ({exc})") from None
        for item in items:
            when = item.datetime
            if item.properties.get("mgrs:tile") != tile or when is None or not first <= when <= last:
                continue
            if wanted is not None and item_sensor(item) not in wanted:
                continue
            found.setdefault(item.id, item)
    return sorted(found.values(), key=lambda i: (i.datetime, i.id))
