"""The catalog a portal serves: every STAC collection under one folder and its items, indexed by key.

Users name items and assets only by the keys of this index; a file is served only when the index holds it and
its real path (symlinks followed) lies inside the catalog folder, so no request can reach a file elsewhere."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from musyq.core.errors import InputError, MusyqError
from musyq.io.catalog import as_datetime

COLLECTION_FILE = "collection.json"
REFRESH_SECONDS = 2.0


class NotFound(MusyqError, LookupError):
    """A collection, item or asset the catalog does not hold."""


@dataclass(frozen=True)
class Asset:
    key: str
    path: Path
    media_type: str
    bands: tuple[str, ...]  # band names in file order (empty for one-band layers)
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Item:
    id: str
    collection: str
    datetime: datetime
    bbox: tuple[float, float, float, float]
    properties: dict[str, Any]
    assets: dict[str, Asset]
    path: Path  # the item's JSON

    @property
    def tile(self) -> str | None:
        return self.properties.get("mgrs:tile")


@dataclass
class Collection:
    key: str  # its folder relative to the catalog, dots for slashes ("order.ard"); "root" for the top one
    id: str
    description: str
    file: Path
    items: dict[str, Item] = field(default_factory=dict)


def _inside(path: Path, root: Path) -> bool:
    return os.path.commonpath([os.path.realpath(path), str(root)]) == str(root)


class Catalog:
    """The collections under ``root`` (every ``collection.json`` at any depth) and their items, indexed again
    when a collection file appears, changes or goes (checked at most every ``refresh_seconds``), so the outputs
    of running orders show up while the portal runs."""

    def __init__(self, root: Path, refresh_seconds: float = REFRESH_SECONDS) -> None:
        if not root.is_dir():
            raise InputError(root, "no such catalog folder")
        self.root = Path(os.path.realpath(root))
        self.refresh_seconds = refresh_seconds
        self.collections: dict[str, Collection] = {}
        self._stamps: dict[Path, int] = {}
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._index()
        if not self.collections:
            raise InputError(root, "holds no STAC collection (collection.json)")

    def _index(self) -> None:
        stamps = {}
        for found in sorted(self.root.rglob(COLLECTION_FILE)):
            if _inside(found, self.root):
                try:
                    stamps[found] = found.stat().st_mtime_ns
                except OSError:
                    continue
        if stamps == self._stamps:
            return
        kept = {c.file: c for c in self.collections.values() if self._stamps.get(c.file) == stamps.get(c.file)}
        collections = {}
        for found in stamps:
            collection = kept.get(found) or self._read(found)
            if collection is not None:
                collections[collection.key] = collection
        self.collections, self._stamps = collections, stamps  # one swap: a request sees the old or the new

    def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._checked < self.refresh_seconds:
            return
        if not self._lock.acquire(blocking=force):
            return
        try:
            self._checked = time.monotonic()
            self._index()
        finally:
            self._lock.release()

    def _read(self, file: Path) -> Collection | None:
        try:
            document = json.loads(file.read_text())
        except (OSError, ValueError):
            return None  # a collection being written; the next index finds it
        relative = file.parent.relative_to(self.root).as_posix()
        key = "root" if relative == "." else relative.replace("/", ".")  # one URL segment
        collection = Collection(key, str(document.get("id", relative)), str(document.get("description", "")), file)
        for link in document.get("links", []):
            if link.get("rel") != "item":
                continue
            item_file = (file.parent / link["href"]).resolve()
            if not _inside(item_file, self.root):
                continue
            item = _read_item(item_file, collection.key, self.root)
            if item is not None:
                collection.items[item.id] = item
        return collection

    def collection(self, key: str) -> Collection:
        self.refresh()
        try:
            return self.collections[key]
        except KeyError:
            raise NotFound(f"no collection {key!r} in the catalog") from None

    def item(self, collection: str, item_id: str) -> Item:
        try:
            return self.collection(collection).items[item_id]
        except KeyError:
            raise NotFound(f"no item {item_id!r} in collection {collection!r}") from None

    def asset(self, collection: str, item_id: str, key: str) -> Asset:
        item = self.item(collection, item_id)
        try:
            return item.assets[key]
        except KeyError:
            raise NotFound(f"item {item_id!r} has no asset {key!r}; it has {', '.join(item.assets)}") from None


def _read_item(file: Path, collection: str, root: Path) -> Item | None:
    try:
        document = json.loads(file.read_text())
        properties = document["properties"]
        when = as_datetime(properties.get("datetime") or properties["start_datetime"])
        west, south, east, north = (float(v) for v in document["bbox"][:4])
    except (OSError, ValueError, KeyError, TypeError, MusyqError):
        return None  # not an item musyq can show: left out of the index
    assets = {}
    for key, asset in document.get("assets", {}).items():
        path = (file.parent / asset["href"]).resolve()
        if "://" in asset["href"] or not _inside(path, root) or not path.is_file():
            continue
        bands = tuple(str(b.get("name", "")) for b in asset.get("eo:bands", asset.get("bands", [])))
        assets[key] = Asset(key, path, str(asset.get("type", "application/octet-stream")), bands,
                            tuple(asset.get("roles", ())))
    return Item(str(document["id"]), collection, when, (west, south, east, north), properties, assets, file)
