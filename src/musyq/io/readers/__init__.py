"""Readers chosen by probing: each says whether it recognises an input, the first that does opens it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from musyq.core.errors import InputError, UnknownProductError
from musyq.io.readers.bandstack import BandStackReader, StackOptions
from musyq.io.readers.gaofen import GaofenReader
from musyq.io.readers.landsat import LandsatReader
from musyq.io.readers.sentinel2 import Sentinel2SafeReader, Sentinel2TileReader
from musyq.core.scene import Scene


class Reader(Protocol):
    name: str

    def can_read(self, path: Path) -> bool: ...

    def open(self, path: Path) -> Scene: ...


def readers(stack: StackOptions | None = None, calibration: Path | None = None) -> tuple[Reader, ...]:
    """Readers in probing order: products with metadata first, plain band files last."""
    return (Sentinel2SafeReader(), Sentinel2TileReader(), LandsatReader(), GaofenReader(calibration),
            BandStackReader(stack))


def open_scene(path: str | Path, stack: StackOptions | None = None, calibration: Path | None = None) -> Scene:
    """Open any supported Level-1 product; ``stack`` describes plain band files that have no metadata,
    ``calibration`` is a table of radiometric coefficients over the shipped one (Gaofen)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    for reader in readers(stack, calibration):
        if reader.can_read(path):
            return reader.open(path)
    raise UnknownProductError(path, "not a recognised product (Sentinel-2 L1C SAFE or tile folder, Landsat "
                                    "Level-1 with MTL, Gaofen WFV Level-1A archive or folder, or band files named "
                                    "with band ids)")


__all__ = ["StackOptions", "open_scene", "readers"]
