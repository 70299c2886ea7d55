"""What the portal draws and reads from COGs: web-mercator tiles of bands, of the quality codes and of band-math
expressions (rio-tiler reads the overview that fits the zoom), a pixel's values, and a pixel's series."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import morecantile
import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Interleaving, Resampling
from rasterio.errors import CRSError
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rio_tiler.colormap import cmap
from rio_tiler.models import ImageData

from musyq.core.errors import MusyqError
from musyq.portal.catalog import Asset, Item
from musyq.products.expression import Expression
from musyq.timeseries.reconstruct import OBSERVED

TILE_SIZE = 256
IDLE_DATASET_BYTES = 256 * 2**20  # what the datasets kept open between requests may hold
IDLE_PER_FILE = 2  # datasets kept open per file: more are opened while many requests read it, then closed
DATASET_BYTES = 32 * 2**10  # a GeoTIFF dataset's own structures, besides its decode buffer
PNG_LEVEL = 1  # a third of the encoding time of the default level, a third larger: loopback and LAN tiles
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
MERCATOR_CRS = CRS.from_epsg(3857)
# the quality codes (fill, clear, water, shadow, snow, cloud) as an overlay: clear is left transparent
QUALITY_COLOURS = {0: (0, 0, 0, 0), 1: (0, 0, 0, 0), 2: (30, 90, 200, 170), 3: (90, 60, 30, 170),
                   4: (120, 230, 255, 200), 5: (255, 255, 255, 200)}
CLEAR, WATER = 1, 2


class RequestError(MusyqError, ValueError):
    """A request the portal cannot draw or read (a band it lacks, a bad stretch, a point off the item)."""


def band_indexes(asset: Asset, names: Sequence[str]) -> tuple[int, ...]:
    """1-based band indexes of band names (or of 1-based numbers) in an asset."""
    indexes = []
    for name in names:
        if name in asset.bands:
            indexes.append(asset.bands.index(name) + 1)
        elif name.isdigit() and 1 <= int(name) <= max(len(asset.bands), 1):
            indexes.append(int(name))
        else:
            raise RequestError(f"asset {asset.key!r} has no band {name!r}; it has {', '.join(asset.bands) or '1'}")
    return tuple(indexes)


class _Handles:
    """Open datasets shared by the server's threads, by file, its change time and overview level: a warm tile or
    pixel opens no file and decodes no block again. A rasterio dataset serves one thread at a time, so each use
    takes an idle one (or opens another) and gives it back. GDAL's GeoTIFF reader holds, outside its block cache,
    a buffer of a whole block of all pixel-interleaved bands for each dataset (1.5 MB for a 3-band 512 px uint16
    COG, however small its image), so the idle datasets are bounded in those bytes and in number per file, the
    least recently used closed first."""

    def __init__(self, budget: int, per_file: int) -> None:
        self.budget, self.per_file = budget, per_file
        self.held = 0
        self._idle: OrderedDict[tuple[str, int, int | None], list[tuple[rasterio.DatasetReader, int]]] = \
            OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def open(self, path: Path, level: int | None = None) -> Iterator[rasterio.DatasetReader]:
        key = (str(path), path.stat().st_mtime_ns, level)
        with self._lock:
            idle = self._idle.get(key)
            dataset, cost = idle.pop() if idle else (None, 0)
            self.held -= cost
        if dataset is None:
            dataset = rasterio.open(path, overview_level=level) if level is not None else rasterio.open(path)
            cost = _dataset_bytes(dataset)
        closing = []
        try:
            yield dataset
        finally:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                self._idle.move_to_end(key)
                if len(idle) < self.per_file:
                    idle.append((dataset, cost))
                    self.held += cost
                else:
                    closing.append(dataset)
                while self.held > self.budget:
                    for stale, stale_cost in self._idle.popitem(last=False)[1]:
                        closing.append(stale)
                        self.held -= stale_cost
            for stale in closing:
                stale.close()


def _dataset_bytes(dataset: rasterio.DatasetReader) -> int:
    """What an open GeoTIFF dataset holds once it has decoded a block: its block buffer, of all bands when they
    are pixel-interleaved."""
    rows, columns = dataset.block_shapes[0]
    bands = dataset.count if dataset.interleaving == Interleaving.pixel else 1
    return DATASET_BYTES + int(rows * columns * bands * max(np.dtype(kind).itemsize for kind in dataset.dtypes))


_handles = _Handles(IDLE_DATASET_BYTES, IDLE_PER_FILE)


def _overview_level(factors: Sequence[int], resolution: float, pixel: float) -> int | None:
    """The coarsest overview still at least as fine as ``pixel`` (in the source's units), None for full
    resolution: a zoomed-out tile reads a few overview blocks, not the whole file."""
    level = None
    for i, factor in enumerate(factors):
        if factor * resolution <= pixel:
            level = i
    return level


def _read_tile(asset: Asset, indexes: Sequence[int], x: int, y: int, z: int) -> ImageData | None:
    """The tile warped straight onto its 256 px web-mercator grid from the fitting overview of a held dataset.
    rio-tiler's reader warps the whole file's extent for each request and opens the file anew, 3x the time of a
    warm tile read this way; its ImageData still does the rescaling, colour maps and encoding."""
    with _handles.open(asset.path) as full:
        crs, bounds, nodata = full.crs, full.bounds, full.nodata
        scales, offsets, factors, resolution = full.scales, full.offsets, full.overviews(1), abs(full.res[0])
    west, south, east, north = WEB_MERCATOR.xy_bounds(morecantile.Tile(x, y, z))
    try:
        left, bottom, right, top = transform_bounds(MERCATOR_CRS, crs, west, south, east, north)
    except CRSError:
        return None
    if not np.all(np.isfinite((left, bottom, right, top))):
        return None
    if left >= bounds.right or right <= bounds.left or bottom >= bounds.top or top <= bounds.bottom:
        return None
    level = _overview_level(factors, resolution, (right - left) / TILE_SIZE)
    # without a no-data value the warp adds an alpha band, which tells pixels off the file
    extra = {"src_nodata": nodata, "nodata": nodata} if nodata is not None else {"add_alpha": True}
    with _handles.open(asset.path, level) as source, WarpedVRT(
            source, crs=MERCATOR_CRS, transform=from_bounds(west, south, east, north, TILE_SIZE, TILE_SIZE),
            width=TILE_SIZE, height=TILE_SIZE, resampling=Resampling.nearest, **extra) as warped:
        values = warped.read([*indexes, warped.count] if nodata is None else list(indexes))
    if nodata is None:
        values, alpha = values[:-1], values[-1]
        empty = np.broadcast_to(alpha == 0, values.shape)
    else:
        empty = np.isnan(values) if np.isnan(nodata) else values == nodata
    data = values.astype(np.float64)  # band math on the values as stored: float32 moves a ratio by a level
    for band, index in enumerate(indexes):
        data[band] = data[band] * scales[index - 1] + offsets[index - 1]
    data = np.ma.MaskedArray(data, mask=empty)
    return ImageData(data, bounds=(west, south, east, north), crs=MERCATOR_CRS)


def empty_tile() -> bytes:
    """A transparent tile, for tiles off the item."""
    nothing = np.ma.MaskedArray(np.zeros((1, TILE_SIZE, TILE_SIZE), np.uint8), mask=True)
    return ImageData(nothing).render(img_format="PNG", ZLEVEL=PNG_LEVEL)


def band_tile(asset: Asset, names: Sequence[str], x: int, y: int, z: int, stretch: tuple[float, float],
              colormap: str | None) -> bytes:
    """One band with a colour map, or three as red, green and blue, stretched linearly."""
    if len(names) not in (1, 3):
        raise RequestError("name one band (with a colour map) or three (red, green, blue)")
    if colormap is not None and colormap not in cmap.list():
        raise RequestError(f"unknown colour map {colormap!r}")
    image = _read_tile(asset, band_indexes(asset, names), x, y, z)
    if image is None:
        return empty_tile()
    image.rescale(in_range=(stretch,) * image.count)
    return image.render(img_format="PNG", ZLEVEL=PNG_LEVEL, colormap=cmap.get(colormap) if colormap and image.count == 1 else None)


def quality_tile(asset: Asset, x: int, y: int, z: int) -> bytes:
    image = _read_tile(asset, (1,), x, y, z)
    if image is None:
        return empty_tile()
    codes = np.ma.filled(image.array, 0).astype(np.uint8)
    return ImageData(codes).render(img_format="PNG", ZLEVEL=PNG_LEVEL, colormap=QUALITY_COLOURS)


def expression_values(asset: Asset, expression: Expression, x: int, y: int, z: int) -> ImageData | None:
    image = _read_tile(asset, band_indexes(asset, expression.bands), x, y, z) if expression.bands else None
    if image is None:
        return None
    values = {b: np.ma.filled(image.array[i].astype(np.float64), np.nan) for i, b in enumerate(expression.bands)}
    result = expression.evaluate(values)
    return ImageData(np.ma.masked_invalid(result[None]), bounds=image.bounds, crs=image.crs)


def expression_tile(asset: Asset, expression: Expression, x: int, y: int, z: int, stretch: tuple[float, float],
                    colormap: str) -> bytes:
    if colormap not in cmap.list():
        raise RequestError(f"unknown colour map {colormap!r}")
    image = expression_values(asset, expression, x, y, z)
    if image is None:
        return empty_tile()
    image.rescale(in_range=(stretch,))
    return image.render(img_format="PNG", ZLEVEL=PNG_LEVEL, colormap=cmap.get(colormap))


@dataclass(frozen=True)
class Pixel:
    row: int
    col: int
    values: dict[str, float | None]


@lru_cache(maxsize=64)
def _from_lonlat(crs: str) -> Transformer:
    """Building a transformer takes milliseconds: one per CRS, not one per file of a series."""
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def pixel_values(asset: Asset, lon: float, lat: float, only: Sequence[str] | None = None) -> Pixel | None:
    """The asset's values (scaled to physical units) at a point, or None off its grid; ``only`` some bands (each
    band read decodes a block of the COG)."""
    with _handles.open(asset.path) as source:
        x, y = _from_lonlat(source.crs.to_string()).transform(lon, lat)
        row, col = source.index(x, y)
        if not (0 <= row < source.height and 0 <= col < source.width):
            return None
        names = asset.bands or tuple(f"band{i + 1}" for i in range(source.count))
        wanted = [i for i, n in enumerate(names) if only is None or n in only]
        raw = np.full(len(names), np.nan)
        raw[wanted] = source.read([i + 1 for i in wanted], window=Window(col, row, 1, 1))[:, 0, 0]
        scales, offsets, nodata = source.scales, source.offsets, source.nodata
    values: dict[str, float | None] = {}
    for i, name in enumerate(names):
        if i not in wanted:
            continue
        empty = nodata is not None and (raw[i] == nodata or (np.isnan(nodata) and np.isnan(raw[i])))
        # rounded to the precision of a 16-bit scaled value and more: 0.1031, not 0.10310000000000001
        values[name] = None if empty or not np.isfinite(raw[i]) else round(float(raw[i] * scales[i] + offsets[i]), 7)
    return Pixel(int(row), int(col), values)


@dataclass(frozen=True)
class Observation:
    datetime: str
    item: str
    sensor: str
    value: float | None
    state: str  # observed (clear), flagged (cloud, shadow, snow, water) or filled (reconstructed)
    quality: int | None


def point_series(items: Sequence[Item], lon: float, lat: float, asset_key: str, band: str) -> list[Observation]:
    """A pixel's values through time across sensors: clear observations, flagged ones, and filled months."""
    series = []
    for item in sorted(items, key=lambda i: i.datetime):
        if asset_key not in item.assets or not (item.bbox[0] <= lon <= item.bbox[2]
                                                and item.bbox[1] <= lat <= item.bbox[3]):
            continue
        asset = item.assets[asset_key]
        if band not in asset.bands:
            continue
        pixel = pixel_values(asset, lon, lat, (band,))
        if pixel is None:
            continue
        value = pixel.values[band]
        quality = None
        if "MASK" in item.assets:
            codes = item.assets["MASK"]
            mask = pixel_values(codes, lon, lat, codes.bands[:1] or ("band1",))
            code = None if mask is None else next(iter(mask.values.values()))  # the first band: the codes
            quality = None if code is None else int(code)
        if value is None and quality in (None, 0):
            continue
        if "FLAG" in item.assets:  # an ARD+ month says per pixel whether it was observed or filled
            flags = item.assets["FLAG"]
            how = pixel_values(flags, lon, lat, flags.bands[:1] or ("band1",))
            flag = None if how is None else next(iter(how.values.values()))
            state = "observed" if flag == OBSERVED else "filled" if flag else "flagged"
        else:
            state = "observed" if quality in (None, CLEAR) else "flagged"
        series.append(Observation(item.datetime.isoformat(), item.id, item.id.split(".")[0], value, state,
                                  quality))
    return series
