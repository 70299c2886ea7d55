"""Cloud shadows: dark pixels where some cloud of the scene can cast its shadow.

A shadow pixel must pass two tests:

* it is *dark*: in the near and shortwave infrared it is well below the clear surface around it
  (the clear-sky median of its neighbourhood of a few kilometres), since shadows are lit by
  diffuse sky light only;
* it lies in a *cast zone*: where a detected cloud, moved away from the sun (and corrected for
  the view parallax) by its height, lands. Clouds of one scene mostly share a layer, so the
  scene's cloud height is found first as the shift at which all clouds together best cover dark
  pixels; each cloud object then looks for its own height near that one (the object matching
  of Fmask, Zhu & Woodcock 2012), and its zone spans heights around the best match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray
from scipy import ndimage

from musyq.ard.aerosol import Blocks, fill_and_smooth, masked_median

MIN_HEIGHT_M, MAX_HEIGHT_M = 200.0, 12_000.0
MIN_SIMILARITY = 0.3
MIN_EXCESS = 0.25  # a match must beat chance: overlap > base + MIN_EXCESS * (1 - base)
MIN_LAYER_PIXELS = 500  # cloud pixels needed to find the scene's cloud layer
MIN_OBJECT_PIXELS = 50  # smaller objects match dark pixels by chance; they follow the scene layer
MAX_TEMPLATE_PIXELS = 1000  # the overlap is a fraction: a sample of this size estimates it to about 1.5 %
SCENE_HEIGHT_SPREAD = 3.0
OBJECT_HEIGHT_SPREAD = 1.5
DARKNESS_RATIO = 0.8
BACKGROUND_BLOCK_M = 3000.0

Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class ShadowGeometry:
    """Where a shadow falls, per metre of cloud height, in pixels (rows down, columns right)."""

    row_per_metre: float
    col_per_metre: float

    @classmethod
    def from_angles(cls, sun_zenith: float, sun_azimuth: float, view_zenith: float, view_azimuth: float,
                    pixel_size: float) -> ShadowGeometry:
        """Shadow lies away from the sun; the cloud itself appears displaced away from the sensor."""
        tan_sun, tan_view = math.tan(math.radians(sun_zenith)), math.tan(math.radians(view_zenith))
        sun, view = math.radians(sun_azimuth), math.radians(view_azimuth)
        east = -tan_sun * math.sin(sun) + tan_view * math.sin(view)
        north = -tan_sun * math.cos(sun) + tan_view * math.cos(view)
        return cls(-north / pixel_size, east / pixel_size)

    def heights(self, lowest: float, highest: float) -> NDArray[np.float64]:
        """Cloud heights whose shadows are one pixel apart, from ``lowest`` to ``highest``."""
        per_metre = math.hypot(self.row_per_metre, self.col_per_metre)
        count = max(int((highest - lowest) * per_metre) + 1, 2)
        return np.linspace(lowest, highest, count)


def clear_background(band: NDArray[np.float32], clear: Mask, pixel_size: float) -> NDArray[np.float32]:
    """The clear-sky median of ``band`` around every pixel, from blocks of about 3 km."""
    size = max(int(BACKGROUND_BLOCK_M / pixel_size), 8)
    blocks = Blocks(size, (band.shape[0], band.shape[1]))
    clear_blocks = blocks.split(clear)
    medians = masked_median(blocks.split(band), clear_blocks)
    enough = clear_blocks.sum(axis=-1) >= size * size // 10
    if not enough.any():
        values = band[clear] if clear.any() else band[np.isfinite(band)]
        return np.full(band.shape, np.median(values) if values.size else 0.0, dtype=np.float32)
    smooth = fill_and_smooth(medians, enough)
    rows, cols = np.arange(band.shape[0]), np.arange(band.shape[1])
    return blocks.interpolate(smooth, rows, cols).astype(np.float32)


def dark_pixels(bands: list[NDArray[np.float32]], clear: Mask, valid: Mask, pixel_size: float) -> Mask:
    """Pixels below ``DARKNESS_RATIO`` times their clear surroundings in every given band."""
    dark = valid.copy()
    for band in bands:
        dark &= band < np.float32(DARKNESS_RATIO) * clear_background(band, clear, pixel_size)
    return dark


@njit(cache=True, parallel=True)
def _overlap(
    rows_: NDArray[np.int32], cols_: NDArray[np.int32], starts: NDArray[np.int64], owners: NDArray[np.int32],
    labels: NDArray[np.int32], hides_shadow: Mask, dark: Mask, row_step: float, col_step: float,
    heights: NDArray[np.float64],
) -> NDArray[np.float64]:  # pragma: no cover - compiled
    """(group, height): the share of a group's pixels, moved by the height, that land on dark or hidden pixels.

    Pixels landing outside the image or on their own object are not counted; a group whose owner
    is 0 (all clouds together) does not count landings on any cloud.
    """
    rows, cols = labels.shape
    groups = starts.size - 1
    out = np.zeros((groups, heights.size))
    for k in prange(groups):
        first, last = starts[k], starts[k + 1]
        own = owners[k]
        for j in range(heights.size):
            dr, dc = heights[j] * row_step, heights[j] * col_step
            matched, total = 0, 0
            for i in range(first, last):
                r = int(round(rows_[i] + dr))
                c = int(round(cols_[i] + dc))
                if r < 0 or r >= rows or c < 0 or c >= cols:
                    continue
                label = labels[r, c]
                if (own > 0 and label == own) or (own == 0 and label > 0):
                    continue
                total += 1
                if dark[r, c] or hides_shadow[r, c]:
                    matched += 1
            out[k, j] = matched / total if total > 0 else 0.0
    return out


@njit(cache=True, parallel=True)
def _sweep(
    rows_: NDArray[np.int32], cols_: NDArray[np.int32], starts: NDArray[np.int64], lowest: NDArray[np.float64],
    highest: NDArray[np.float64], row_step: float, col_step: float, out: Mask,
) -> None:  # pragma: no cover - compiled
    """Mark where each group's pixels land for every height between its lowest and highest, a pixel apart."""
    rows, cols = out.shape
    per_metre = math.hypot(row_step, col_step)
    for k in prange(starts.size - 1):  # concurrent writes only ever set True
        if highest[k] <= 0:
            continue
        steps = max(int((highest[k] - lowest[k]) * per_metre) + 1, 1)
        for s in range(steps + 1):
            height = lowest[k] + (highest[k] - lowest[k]) * s / steps
            dr, dc = height * row_step, height * col_step
            for i in range(starts[k], starts[k + 1]):
                r = int(round(rows_[i] + dr))
                c = int(round(cols_[i] + dc))
                if 0 <= r < rows and 0 <= c < cols:
                    out[r, c] = True


@dataclass(frozen=True)
class CloudObjects:
    """Connected cloud regions as pixel lists ordered by object, plus a subsample for matching."""

    labels: NDArray[np.int32]
    rows: NDArray[np.int32]
    cols: NDArray[np.int32]
    starts: NDArray[np.int64]
    sample_rows: NDArray[np.int32]
    sample_cols: NDArray[np.int32]
    sample_starts: NDArray[np.int64]

    @property
    def count(self) -> int:
        return int(self.starts.size - 1)

    @classmethod
    def label(cls, cloud: Mask) -> CloudObjects:
        labels, count = ndimage.label(cloud, structure=np.ones((3, 3), dtype=bool))
        labels = labels.astype(np.int32)
        flat = labels.ravel()
        sizes = np.bincount(flat, minlength=count + 1)
        order = np.argsort(flat, kind="stable")[sizes[0]:]
        starts = np.concatenate([[0], np.cumsum(sizes[1:])]).astype(np.int64)
        rows, cols = (a.astype(np.int32) for a in np.divmod(order, cloud.shape[1]))
        picks = [np.arange(starts[k], starts[k + 1], max((starts[k + 1] - starts[k]) // MAX_TEMPLATE_PIXELS, 1))
                 for k in range(count)]
        sample = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
        sample_starts = np.concatenate([[0], np.cumsum([p.size for p in picks])]).astype(np.int64)
        return cls(labels, rows, cols, starts, rows[sample], cols[sample], sample_starts)


@dataclass(frozen=True)
class ShadowResult:
    shadow: Mask
    scene_height_m: float
    cloud_objects: int
    matched_objects: int


def required_overlap(dark: Mask, labels: NDArray[np.int32]) -> float:
    """The overlap a shadow match must reach: well above what dark pixels give by chance."""
    outside = labels == 0
    base = float(dark[outside].mean()) if outside.any() else 0.0
    return max(MIN_SIMILARITY, base + MIN_EXCESS * (1 - base))


def scene_height(objects: CloudObjects, dark: Mask, valid: Mask, geometry: ShadowGeometry,
                 heights: NDArray[np.float64], required: float) -> float:
    """The height at which all clouds, moved together, best cover dark pixels (NaN if nowhere above ``required``,
    or if there are too few cloud pixels to tell)."""
    stride = max(objects.sample_rows.size // 50_000, 1)
    rows, cols = objects.sample_rows[::stride], objects.sample_cols[::stride]
    if rows.size < MIN_LAYER_PIXELS or heights.size == 0:
        return math.nan
    overlap = _overlap(rows, cols, np.array([0, rows.size], dtype=np.int64), np.zeros(1, dtype=np.int32),
                       objects.labels, ~valid, dark, geometry.row_per_metre, geometry.col_per_metre, heights)[0]
    if overlap.max() < required:
        return math.nan
    return float(heights[int(np.argmax(overlap))])


def cloud_shadows(
    cloud: Mask, dark: Mask, valid: Mask, geometry: ShadowGeometry, reach_pixels: int = 3,
    min_height: float = MIN_HEIGHT_M, max_height: float = MAX_HEIGHT_M,
) -> ShadowResult:
    """Dark pixels within ``reach_pixels`` of where the scene's cloud objects cast their shadows."""
    objects = CloudObjects.label(cloud)
    if objects.count == 0:
        return ShadowResult(np.zeros_like(cloud), math.nan, 0, 0)
    required = required_overlap(dark, objects.labels)
    height = scene_height(objects, dark & ~cloud, valid, geometry, geometry.heights(min_height, max_height), required)
    if math.isfinite(height):
        lowest = max(height / SCENE_HEIGHT_SPREAD, min_height)
        highest = min(height * SCENE_HEIGHT_SPREAD, max_height)
    else:
        lowest, highest = min_height, max_height
    search = geometry.heights(lowest, highest)
    owners = np.arange(1, objects.count + 1, dtype=np.int32)
    similarity = _overlap(objects.sample_rows, objects.sample_cols, objects.sample_starts, owners, objects.labels,
                          cloud | ~valid, dark, geometry.row_per_metre, geometry.col_per_metre, search)
    best = search[np.argmax(similarity, axis=1)]
    sizes = np.diff(objects.starts)
    matched = (similarity.max(axis=1) > required) & (sizes >= MIN_OBJECT_PIXELS)
    low = np.where(matched, np.maximum(best / OBJECT_HEIGHT_SPREAD, lowest), lowest)
    high = np.where(matched, np.minimum(best * OBJECT_HEIGHT_SPREAD, highest), highest)
    if not math.isfinite(height):
        high = np.where(matched, high, 0.0)  # no scene layer: unmatched clouds cast nothing we can place
    zone = np.zeros_like(cloud)
    _sweep(objects.rows, objects.cols, objects.starts, low, high, geometry.row_per_metre, geometry.col_per_metre, zone)
    if reach_pixels > 0:
        zone = ndimage.binary_dilation(zone, iterations=reach_pixels)
    shadow = zone & dark & valid & ~cloud
    return ShadowResult(np.asarray(shadow), height, objects.count, int(matched.sum()))
