"""Sub-pixel co-registration of an image to a reference of the same place.

The reference is first resampled onto the image's pixel grid (any projection and resolution), so
everything is measured in pixels of the image. The global offset comes from phase correlation of
the whole overlap, refined by matrix-multiply DFT upsampling (Guizar-Sicairos et al. 2008, as in
scikit-image). The local mode correlates a grid of windows, keeps the tie points that fit one
affine transform under RANSAC, and fits it by least squares. Either way the residual RMSE of the
tie points says how well the model explains the local offsets; above a threshold (0.8 px by
default, as the Gaofen ARD system uses) the result is flagged.

Sign convention: ``offset`` is where the image's content lies relative to the reference, in image
pixels (x to the right, y down); the correction moves the image by minus the offset.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path

import numpy as np
import rasterio
import scipy.fft
from affine import Affine
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.warp import reproject
from scipy import ndimage
from skimage.measure import ransac
from skimage.transform import AffineTransform

from musyq.core.errors import InputError, MusyqError
from musyq.core.grid import crs_wkt

Image = NDArray[np.float32]
Array = NDArray[np.float64]
UPSAMPLE = 100  # offsets to 1/100 pixel
TIE_UPSAMPLE = 20  # tie points only judge the fit and find outliers: 1/20 pixel is enough
WINDOW = 128  # tie-point window, pixels
MIN_VALID_SHARE = 0.9  # a window needs this much data in both images
SHARP_PEAK = 30.0  # phase-correlation peak strength of images that look alike
MIN_PEAK_STRENGTH = 10.0  # correlation peak over the surface's standard deviation for a tie point (noise: about 4)
RANSAC_THRESHOLD = 0.5  # pixels
MIN_AFFINE_POINTS = 12  # tie points an affine transform (six parameters) needs to be fitted well
MAX_GLOBAL = 1024  # the global offset comes from at most the central 1024 x 1024 pixels
MAX_WINDOWS = 8  # tie windows per axis at most
EDGE_ITERATIONS = 4  # edge correlations per offset at most (each moves the image back by the estimate)
DEFAULT_MAX_RMSE = 0.8


class Mode(str, Enum):
    """``global``: one offset for the whole image; ``local``: an affine transform from tie points."""

    global_ = "global"
    local = "local"


@dataclass(frozen=True)
class TiePoints:
    """Window centres in the image (x, y pixels) and the offset of the image found in each window."""

    centres: NDArray[np.float64]
    offsets: NDArray[np.float64]

    @property
    def count(self) -> int:
        return int(self.centres.shape[0])


@dataclass(frozen=True)
class Registration:
    """What the co-registration found; ``transform`` maps image pixels to reference pixels (x, y)."""

    mode: str
    offset_x_px: float
    offset_y_px: float
    offset_east_m: float
    offset_north_m: float
    transform: tuple[float, float, float, float, float, float]
    rmse_px: float
    tie_points: int
    inliers: int
    max_rmse_px: float
    flagged: bool
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @property
    def correction(self) -> Affine:
        """Image pixel (x, y) -> where that content belongs, in image pixels."""
        a, b, c, d, e, f = self.transform
        return Affine(a, b, c, d, e, f)


@cache
def _taper(rows: int, cols: int) -> Image:
    return np.outer(np.hanning(rows), np.hanning(cols)).astype(np.float32)


def _prepare(images: Image) -> Image:
    """Fill gaps with the mean and taper the edges, so borders and holes do not correlate.

    Works on one image (rows, cols) or a stack of windows (n, rows, cols) at once.
    """
    valid = np.isfinite(images)
    filled = np.where(valid, images, np.float32(0))
    means = filled.sum(axis=(-2, -1), keepdims=True) / np.maximum(valid.sum(axis=(-2, -1), keepdims=True), 1)
    filled -= np.where(valid, means.astype(np.float32), np.float32(0))
    filled *= _taper(*images.shape[-2:])
    return np.asarray(filled, dtype=np.float32)


@cache
def _fast_length(size: int) -> int:
    """The largest length not above ``size`` that FFTs handle quickly (no large prime factors)."""
    length = size
    while scipy.fft.next_fast_len(length, real=True) != length:
        length -= 1
    return length


def _spectrum(image: Image) -> NDArray[np.complex64]:
    return np.asarray(scipy.fft.rfft2(_prepare(image), workers=-1))


def _signed(position: int, size: int) -> int:
    """A wrapped-around index as a signed offset."""
    return position - size if position > size // 2 else position


def _upsampled(cross: NDArray[np.complex64], shape: tuple[int, int], centre: tuple[float, float], step: float,
               samples: int) -> Array:
    """Correlation at ``samples`` x ``samples`` points ``step`` pixels apart around ``centre`` (dy, dx).

    A matrix-multiply DFT of the half spectrum of a real correlation (Guizar-Sicairos et al. 2008):
    only the neighbourhood of the peak is evaluated, at any resolution.
    """
    rows, cols = shape
    around = (np.arange(samples) - (samples - 1) / 2) * step
    row_freq = scipy.fft.fftfreq(rows) * 2j * np.pi
    col_freq = np.arange(cross.shape[-1]) / cols * 2j * np.pi
    weights = np.full(cross.shape[-1], 2.0)  # each half-spectrum column stands for itself and its mirror
    weights[0] = 1.0
    if cols % 2 == 0:
        weights[-1] = 1.0
    row_kernel = np.exp(np.outer(centre[0] + around, row_freq))
    col_kernel = np.exp(np.outer(col_freq, centre[1] + around)) * weights[:, None]
    return np.asarray((row_kernel @ cross.astype(np.complex128) @ col_kernel).real)


def _peak(cross: NDArray[np.complex64], shape: tuple[int, int], upsample: int) -> tuple[float, float]:
    """Position (dy, dx) of the correlation maximum to 1/``upsample`` pixel: whole pixel, then 1/10, then finer."""
    surface = scipy.fft.irfft2(cross, s=shape, workers=-1)
    row, col = np.unravel_index(int(np.argmax(surface)), shape)
    centre = (float(_signed(int(row), shape[0])), float(_signed(int(col), shape[1])))
    for step, samples in ((0.1, 15), (1.0 / upsample, 21)):
        if step < 1.0 / upsample:
            break
        local = _upsampled(cross, shape, centre, step, samples)
        r, c = np.unravel_index(int(np.argmax(local)), local.shape)
        centre = (centre[0] + (r - (samples - 1) / 2) * step, centre[1] + (c - (samples - 1) / 2) * step)
    return centre


def _peak_strength(cross: NDArray[np.complex64], shape: tuple[int, ...]) -> NDArray[np.float64]:
    """Height of each phase-correlation peak in standard deviations of its correlation surface."""
    surface = scipy.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-12), s=shape[-2:], axes=(-2, -1), workers=-1)
    flat = surface.reshape(-1, shape[-2] * shape[-1])
    return np.asarray(flat.max(axis=1) / np.maximum(flat.std(axis=1), 1e-12), dtype=np.float64)


def _edges(image: Image) -> Image:
    """Gradient magnitude of log reflectance: field borders, roads and shores, which outlast the seasons."""
    valid = np.isfinite(image)
    image = without_bright_outliers(image)
    filled = np.where(valid, image, np.float32(np.nanmean(image) if valid.any() else 1.0))
    logged = np.log(np.maximum(filled, np.float32(1e-3)))
    magnitude = np.hypot(ndimage.sobel(logged, 1), ndimage.sobel(logged, 0))
    magnitude[~ndimage.binary_dilation(valid, iterations=2)] = 0
    return np.asarray(magnitude, dtype=np.float32)


def _moved(image: Image, dx: float, dy: float) -> Image:
    """``image`` with its content moved by (dx, dy) pixels (Fourier shift); gaps move along and stay NaN."""
    valid = np.isfinite(image)
    filled = np.where(valid, image, np.float32(image[valid].mean() if valid.any() else 0.0))
    spectrum = ndimage.fourier_shift(scipy.fft.rfft2(filled, workers=-1), (dy, dx), n=image.shape[1])
    shifted = scipy.fft.irfft2(spectrum, s=image.shape, workers=-1)
    still_valid = ndimage.shift(valid.astype(np.float32), (dy, dx), order=1, cval=0.0) > 0.99
    return np.where(still_valid, shifted, np.nan).astype(np.float32)


def _edge_offset(reference: Image, image: Image, upsample: int) -> tuple[float, float]:
    """Offset of ``image`` from plain correlation of edge images, iterated until it stops changing.

    The broad correlation peak of dissimilar images is a little asymmetric, and the tapered window
    pulls it towards zero, which biases the estimate in proportion to the offset. Moving the image
    back by the estimate and measuring again (edges and taper made anew) removes the bias: at the
    fixed point the two contents line up inside one window.
    """
    reference_spectrum = _spectrum(_edges(reference))
    dx = dy = 0.0
    for _ in range(EDGE_ITERATIONS):
        current = image if dx == dy == 0.0 else _moved(image, -dx, -dy)
        cross = reference_spectrum * np.conj(_spectrum(_edges(current)))
        shift_y, shift_x = _peak(cross, image.shape, upsample)  # where the image correlates best: minus its offset
        dx, dy = dx - shift_x, dy - shift_y
        if max(abs(shift_x), abs(shift_y)) < 1.0 / upsample:
            break
    return dx, dy


def phase_offset(reference: Image, image: Image, upsample: int = UPSAMPLE) -> tuple[float, float, float]:
    """Offset (x, y) of ``image``'s content relative to ``reference`` in pixels, and the peak strength.

    Where the two look alike (same sensor and season: a sharp phase-correlation peak) the plain
    correlation of the images themselves is the most precise, also after smoothing resampling, which
    biases phase correlation towards whole pixels. Where they do not (other sensor, season or resolution)
    the correlation of their edge images is the robust measure. Each image's gaps (NaN) are filled
    on their own: a gap mask shared by both would correlate at zero.
    """
    cross = _spectrum(reference) * np.conj(_spectrum(image))
    strength = float(_peak_strength(cross[None], (1, *image.shape))[0])
    if strength >= SHARP_PEAK:
        shift_y, shift_x = _peak(cross, image.shape, upsample)
        return -shift_x, -shift_y, strength
    dx, dy = _edge_offset(reference, image, upsample)
    return dx, dy, strength


def without_bright_outliers(image: Image) -> Image:
    """The image capped at its upper quartile + 3 interquartile ranges, so clouds do not dominate.

    Capping, rather than masking, keeps the sub-pixel shape of what remains.
    """
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return image
    low, high = np.percentile(finite, [25, 75])
    return np.minimum(image, np.float32(high + 3 * (high - low)))


def _parabolic_peaks(surfaces: Array) -> Array:
    """(window, [dy, dx]) position of each correlation surface's maximum, refined by a parabola per axis.

    Positions are signed (the surfaces wrap around), in pixels, to about 1/20 pixel.
    """
    count, rows, cols = surfaces.shape
    flat = surfaces.reshape(count, -1).argmax(axis=1)
    peak_row, peak_col = np.divmod(flat, cols)
    k = np.arange(count)

    def refine(before: Array, centre: Array, after: Array) -> Array:
        curvature = before - 2 * centre + after
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(curvature < 0, 0.5 * (before - after) / curvature, 0.0)
        return np.clip(step, -0.5, 0.5)

    dy = peak_row + refine(surfaces[k, (peak_row - 1) % rows, peak_col], surfaces[k, peak_row, peak_col],
                           surfaces[k, (peak_row + 1) % rows, peak_col])
    dx = peak_col + refine(surfaces[k, peak_row, (peak_col - 1) % cols], surfaces[k, peak_row, peak_col],
                           surfaces[k, peak_row, (peak_col + 1) % cols])
    dy = np.where(dy > rows / 2, dy - rows, dy)
    dx = np.where(dx > cols / 2, dx - cols, dx)
    return np.stack([dy, dx], axis=1)


def central_window(shape: tuple[int, ...], size: int) -> tuple[slice, slice]:
    """The middle pixels, at most ``size`` per axis and of lengths FFTs handle quickly: time stays bounded."""
    rows, cols = _fast_length(min(shape[0], size)), _fast_length(min(shape[1], size))
    top, left = (shape[0] - rows) // 2, (shape[1] - cols) // 2
    return slice(top, top + rows), slice(left, left + cols)


def window_size(shape: tuple[int, int]) -> int:
    """The largest of 128, 64 and 32 pixels that fits two half-overlapping windows along the short side."""
    for size in (WINDOW, WINDOW // 2, WINDOW // 4):
        if min(shape) >= 1.5 * size:
            return size
    return min(shape)


def tie_points(reference: Image, image: Image, window: int | None = None, precise: bool = False) -> TiePoints:
    """Offsets on a grid of half-overlapping windows with enough data and a clear correlation peak.

    All windows are correlated in one batch of FFTs and located to about 1/20 pixel (enough to judge
    a global offset), or with ``precise`` to 1/100 pixel by DFT upsampling (for fitting a transform).
    The few whose images do not look alike (a weak phase-correlation peak) are measured again on
    their edges, as ``phase_offset`` does.
    """
    rows, cols = image.shape
    size = min(window or window_size((rows, cols)), rows, cols)
    # half-overlapping windows, spread out further on large images so there are at most MAX_WINDOWS per axis
    step = max(size // 2, (rows - size) // MAX_WINDOWS + 1, (cols - size) // MAX_WINDOWS + 1, 1)
    grid_tops, grid_lefts = np.meshgrid(np.arange(0, rows - size + 1, step), np.arange(0, cols - size + 1, step),
                                        indexing="ij")
    tops, lefts = grid_tops.ravel(), grid_lefts.ravel()
    def windows(values: Image) -> Image:
        return np.asarray(np.lib.stride_tricks.sliding_window_view(values, (size, size))[tops, lefts])

    stack_reference, stack_image = windows(reference), windows(image)
    prepared_reference, prepared_image = _prepare(stack_reference), _prepare(stack_image)
    valid_share = (np.isfinite(stack_reference) & np.isfinite(stack_image)).mean(axis=(1, 2))
    # a window needs data in both images, and something to see in each (a flat one is all zero once prepared)
    keep = (valid_share >= MIN_VALID_SHARE) & prepared_reference.any(axis=(1, 2)) & prepared_image.any(axis=(1, 2))
    if not keep.any():
        return TiePoints(np.zeros((0, 2)), np.zeros((0, 2)))
    tops, lefts, stack_reference, stack_image = tops[keep], lefts[keep], stack_reference[keep], stack_image[keep]
    cross = scipy.fft.rfft2(prepared_reference[keep], workers=-1) \
        * np.conj(scipy.fft.rfft2(prepared_image[keep], workers=-1))
    strength = _peak_strength(cross, stack_image.shape)
    shifts = _parabolic_peaks(scipy.fft.irfft2(cross, s=(size, size), workers=-1).astype(np.float64))  # where they correlate best
    centres, offsets = [], []
    for k in range(len(tops)):
        if strength[k] >= SHARP_PEAK and precise:
            shift_y, shift_x = _peak(cross[k], (size, size), UPSAMPLE)
            dx, dy = -shift_x, -shift_y
        elif strength[k] >= SHARP_PEAK:
            dx, dy = -float(shifts[k, 1]), -float(shifts[k, 0])
        elif strength[k] >= MIN_PEAK_STRENGTH:
            dx, dy = _edge_offset(stack_reference[k], stack_image[k], TIE_UPSAMPLE)
        else:
            continue
        if max(abs(dx), abs(dy)) > size / 4:
            continue
        centres.append((lefts[k] + size / 2, tops[k] + size / 2))
        offsets.append((dx, dy))
    return TiePoints(np.array(centres, dtype=np.float64).reshape(-1, 2),
                     np.array(offsets, dtype=np.float64).reshape(-1, 2))


def register(reference: Image, image: Image, pixel_size: tuple[float, float], mode: Mode = Mode.global_,
             max_rmse: float = DEFAULT_MAX_RMSE) -> Registration:
    """Co-register ``image`` to ``reference`` (same grid); ``pixel_size`` = (x, y) metres for the offsets in metres."""
    valid = np.isfinite(reference) & np.isfinite(image)
    if valid.sum() < 32 * 32:
        raise MusyqError("the image and the reference overlap by fewer than 32 x 32 pixels with data")
    points = tie_points(reference, image, precise=mode == Mode.local)
    notes: list[str] = []
    fitted: AffineTransform | None = None
    if mode == Mode.local:
        if points.count < 3:
            raise MusyqError(f"only {points.count} tie points with a clear correlation: too few for an affine fit "
                             "(try --mode global)")
        source, target = points.centres, points.centres - points.offsets
        model, inliers = ransac((source, target), AffineTransform, min_samples=3,
                                residual_threshold=RANSAC_THRESHOLD, max_trials=1000, rng=0)
        if model is None or inliers is None or inliers.sum() < 3:
            raise MusyqError("no affine transform explains three or more tie points")
        if inliers.sum() >= MIN_AFFINE_POINTS:
            fitted = AffineTransform.from_estimate(source[inliers], target[inliers])
        else:
            notes.append(f"only {int(inliers.sum())} tie points agree, too few to fit an affine transform well: "
                         "the global offset is used")
    if fitted is not None:
        matrix = fitted.params
        residuals = fitted(source[inliers]) - target[inliers]
        # the offset reported for the whole image is the model's at the image centre
        centre = np.array([[image.shape[1] / 2, image.shape[0] / 2]])
        offset_x, offset_y = (centre - fitted(centre))[0]
        inlier_count = int(inliers.sum())
    else:
        middle = central_window(image.shape, MAX_GLOBAL)
        offset_x, offset_y, _ = phase_offset(reference[middle], image[middle])
        # windows that disagree by more than the RANSAC threshold (cloud, change) do not count in the RMSE
        agree = np.hypot(*(points.offsets - np.array([offset_x, offset_y])).T) <= RANSAC_THRESHOLD
        if points.count and not agree.any():
            notes.append("no tie window agrees with the global offset")
        matrix = np.array([[1.0, 0.0, -offset_x], [0.0, 1.0, -offset_y], [0.0, 0.0, 1.0]])
        residuals = points.offsets[agree] - np.array([offset_x, offset_y])
        inlier_count = int(agree.sum())
    rmse = float(np.sqrt(np.mean(np.sum(residuals**2, axis=1)))) if len(residuals) else math.nan
    flagged = not (rmse <= max_rmse)
    if flagged:
        notes.append(f"residual RMSE {rmse:.2f} px is above {max_rmse} px")
    return Registration(
        mode=mode.value if isinstance(mode, Mode) else str(mode), offset_x_px=round(float(offset_x), 4),
        offset_y_px=round(float(offset_y), 4), offset_east_m=round(float(offset_x) * pixel_size[0], 3),
        offset_north_m=round(-float(offset_y) * pixel_size[1], 3),
        transform=tuple(float(v) for v in matrix[:2].ravel()),  # type: ignore[arg-type]
        rmse_px=round(rmse, 4), tie_points=points.count, inliers=inlier_count, max_rmse_px=max_rmse,
        flagged=flagged, notes=notes)


def band_aliases(band: str) -> tuple[str, ...]:
    """Names a band may go by: a broad ``nir`` and a narrow ``nir08`` stand for each other."""
    return {"nir": ("nir", "nir08"), "nir08": ("nir08", "nir")}.get(band, (band,))


def _band_index(dataset: rasterio.DatasetReader, band: str, path: Path) -> int:
    """1-based index of the band named ``band`` (a description or a number); a single band is taken as it."""
    if band.isdigit():
        index = int(band)
        if not 1 <= index <= dataset.count:
            raise InputError(path, f"has {dataset.count} band(s), no band {index}")
        return index
    names = [(d or "").strip().lower() for d in dataset.descriptions]
    for alias in band_aliases(band):
        if alias in names:
            return names.index(alias) + 1
    if dataset.count == 1:
        return 1
    raise InputError(path, f"no band described as {band!r} (descriptions: {names}); give --band NUMBER")


def _read_band(dataset: rasterio.DatasetReader, index: int) -> Image:
    """Band ``index`` as float32 with NaN where the raster has no data."""
    raw = dataset.read(index)
    values: Image = raw.astype(np.float32)
    if dataset.nodata is not None and not np.isnan(dataset.nodata):
        values[raw == dataset.nodata] = np.nan
    return values


def load_reference_band(path: Path, geobox: GeoBox, band: str) -> Image:
    """Band ``band`` of ``path`` resampled onto ``geobox`` (cubic from a coarser raster, else averaged)."""
    try:
        with rasterio.open(path) as source:
            index = _band_index(source, band, path)
            same_grid = source.crs is not None and geobox.crs == source.crs \
                and source.transform.almost_equals(geobox.affine) and source.shape == geobox.shape.yx
            if same_grid:
                values = _read_band(source, index)
            else:
                coarser = abs(source.transform.a) > 1.5 * abs(geobox.resolution.x)
                values = np.full(geobox.shape.yx, np.nan, dtype=np.float32)
                reproject(rasterio.band(source, index), values, dst_transform=geobox.affine, dst_crs=crs_wkt(geobox),
                          dst_nodata=np.nan, resampling=Resampling.cubic if coarser else Resampling.average)
    except rasterio.RasterioIOError as exc:
        raise InputError(path, f"cannot read the reference: {exc}") from None
    if not np.isfinite(values).any():
        raise InputError(path, "does not overlap the image")
    return values


def read_pair(image_path: Path, reference_path: Path, band: str) -> tuple[Image, Image, rasterio.profiles.Profile]:
    """The image band and the reference band resampled onto the image's grid (NaN outside data)."""
    try:
        with rasterio.open(image_path) as dataset:
            index = _band_index(dataset, band, image_path)
            image = _read_band(dataset, index)
            profile = dataset.profile
            if dataset.crs is None:
                raise InputError(image_path, "has no coordinate reference system")
            geobox = GeoBox((dataset.height, dataset.width), dataset.transform, dataset.crs)
    except rasterio.RasterioIOError as exc:
        raise InputError(image_path, f"not a readable raster ({exc})") from None
    return image, load_reference_band(reference_path, geobox, band), profile


def apply(image_path: Path, registration: Registration, out: Path, resampling: Resampling = Resampling.cubic) -> Path:
    """Write every band of the image resampled onto its own grid with the content moved where it belongs."""
    with rasterio.open(image_path) as dataset:
        profile = dataset.profile
        data = dataset.read()
        descriptions = dataset.descriptions
        nodata = dataset.nodata
    # pixel (x, y) of the image belongs at correction(x, y): its true georeference is transform * correction
    true_transform = profile["transform"] * registration.correction
    corrected = np.zeros_like(data)
    for k in range(data.shape[0]):
        reproject(data[k], corrected[k], src_transform=true_transform, src_crs=profile["crs"],
                  dst_transform=profile["transform"], dst_crs=profile["crs"], src_nodata=nodata, dst_nodata=nodata,
                  resampling=resampling)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with rasterio.open(partial, "w", **(profile | {"driver": "GTiff"})) as target:
            target.write(corrected)
            target.descriptions = descriptions
            target.update_tags(coregistration=registration.to_json())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return out
