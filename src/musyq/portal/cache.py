"""Rendered tiles kept in memory: a map's tiles are asked for again and again (panning back, other users, the
date slider), and a warm tile answers in a lookup instead of a read, a warp and an encoding."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path


class TileCache:
    """At most ``budget`` bytes of tiles, least recently used dropped first. A key holds the file's change time,
    so a rewritten file is never answered from an older rendering."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._tiles: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, request: Hashable, render: Callable[[], bytes]) -> bytes:
        key = (str(path), path.stat().st_mtime_ns, request)
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
                return tile
        tile = render()
        if len(tile) > self.budget:
            return tile
        with self._lock:
            if key not in self._tiles:
                self._tiles[key] = tile
                self.size += len(tile)
            while self.size > self.budget:
                self.size -= len(self._tiles.popitem(last=False)[1])
        return tile
