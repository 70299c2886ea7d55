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
from skimage.registration import phase_cross_correlation
from skimage.transform import AffineTransform

from musyq.errors import InputError, MusyqError
from musyq.grid import crs_wkt

Image = NDArray[np.float32]
Array = NDArray[np.float64]
UPSAMPLE = 100  # offsets to 1/100 pixel
TIE_UPSAMPLE = 20  # tie points only judge the fit and find outliers: 1/20 pixel is enough
WINDOW = 128  # tie-point window, pixels
MIN_VALID_SHARE = 0.9  # a window needs this much data in both images
SHARP_PEAK = 30.0  # phase-correlation peak strength of images that look alike
MIN_PEAK_STRENGTH = 10.0  # correlation peak over the surface's standard deviation for a tie point (noise: about 4)
RANSAC_THRESHOLD = 0.5  # pixels
MAX_GLOBAL = 2048  # the global offset comes from at most the central 2048 x 2048 pixels
MAX_WINDOWS = 12  # tie windows per axis at most
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


def _prepare(image: Image, valid: NDArray[np.bool_]) -> Image:
    """Fill gaps with the mean and taper the edges, so borders and holes do not correlate."""
    filled = np.where(valid, image, np.float32(image[valid].mean() if valid.any() else 0.0))
    return np.asarray((filled - filled.mean()) * _taper(*filled.shape), dtype=np.float32)


def _peak_strength(reference_spectrum: NDArray[np.complex128], image_spectrum: NDArray[np.complex128]) -> float:
    """Height of the phase-correlation peak in standard deviations of the correlation surface."""
    cross = reference_spectrum * np.conj(image_spectrum)
    surface = scipy.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)).real
    spread = float(surface.std())
    return float(surface.max()) / spread if spread > 0 else 0.0


def _edges(image: Image) -> Image:
    """Gradient magnitude of log reflectance: field borders, roads and shores, which outlast the seasons."""
    valid = np.isfinite(image)
    image = without_bright_outliers(image)
    filled = np.where(valid, image, np.float32(np.nanmean(image) if valid.any() else 1.0))
    logged = np.log(np.maximum(filled, np.float32(1e-3)))
    magnitude = np.hypot(ndimage.sobel(logged, 1), ndimage.sobel(logged, 0))
    magnitude[~ndimage.binary_dilation(valid, iterations=2)] = 0
    return _prepare(magnitude.astype(np.float32), np.ones(valid.shape, dtype=bool))


def _edge_offset(reference: Image, image: Image, upsample: int) -> tuple[float, float]:
    """Plain correlation of edge images, refined once after moving the image back by the first estimate.

    The broad correlation peak of dissimilar images is a little asymmetric, which biases its upsampled
    maximum in proportion to the offset; measured again near zero offset, the bias nearly vanishes.
    """
    first, _, _ = phase_cross_correlation(reference, image, upsample_factor=upsample, normalization=None)
    moved = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), first)).real
    second, _, _ = phase_cross_correlation(reference, moved, upsample_factor=upsample, normalization=None)
    return -float(first[1] + second[1]), -float(first[0] + second[0])


def phase_offset(reference: Image, image: Image, upsample: int = UPSAMPLE) -> tuple[float, float, float]:
    """Offset (x, y) of ``image``'s content relative to ``reference`` in pixels, and the peak strength.

    Where the two look alike (same sensor and season: a sharp phase-correlation peak) the plain
    correlation of the images themselves is the most precise, also after smoothing resampling, which
    biases phase correlation towards whole pixels. Where they do not (other sensor, season or resolution)
    the correlation of their edge images is the robust measure. Each image's gaps (NaN) are filled
    on their own: a gap mask shared by both would correlate at zero.
    """
    reference_spectrum = scipy.fft.fft2(_prepare(reference, np.isfinite(reference)))
    image_spectrum = scipy.fft.fft2(_prepare(image, np.isfinite(image)))
    strength = _peak_strength(reference_spectrum, image_spectrum)
    if strength >= SHARP_PEAK:
        shift, _, _ = phase_cross_correlation(reference_spectrum, image_spectrum, space="fourier",
                                              upsample_factor=upsample, normalization=None)
        # scikit-image returns the shift that registers image onto reference: the content lies at minus it
        return -float(shift[1]), -float(shift[0]), strength
    dx, dy = _edge_offset(_edges(reference), _edges(image), upsample)
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


def _parabolic_peaks(surfaces: NDArray[np.float64]) -> NDArray[np.float64]:
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
    """The middle ``size`` x ``size`` pixels (or all of a smaller image): memory and time stay bounded."""
    rows, cols = shape[0], shape[1]
    top, left = max((rows - size) // 2, 0), max((cols - size) // 2, 0)
    return slice(top, top + min(size, rows)), slice(left, left + min(size, cols))


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
    valid = np.isfinite(reference) & np.isfinite(image)
    rows, cols = image.shape
    size = min(window or window_size((rows, cols)), rows, cols)
    # half-overlapping windows, spread out further on large images so there are at most MAX_WINDOWS per axis
    step = max(size // 2, (rows - size) // MAX_WINDOWS + 1, (cols - size) // MAX_WINDOWS + 1, 1)
    cuts = []
    for top in range(0, rows - size + 1, step):
        for left in range(0, cols - size + 1, step):
            cut = (slice(top, top + size), slice(left, left + size))
            if valid[cut].mean() >= MIN_VALID_SHARE and np.nanmax(reference[cut]) > np.nanmin(reference[cut]) \
                    and np.nanmax(image[cut]) > np.nanmin(image[cut]):
                cuts.append(cut)
    if not cuts:
        return TiePoints(np.zeros((0, 2)), np.zeros((0, 2)))
    stack_reference = np.stack([_prepare(reference[c], np.isfinite(reference[c])) for c in cuts])
    stack_image = np.stack([_prepare(image[c], np.isfinite(image[c])) for c in cuts])
    spectra_reference = scipy.fft.fft2(stack_reference, workers=-1)
    spectra_image = scipy.fft.fft2(stack_image, workers=-1)
    cross = spectra_reference * np.conj(spectra_image)
    whitened = scipy.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)).real
    strength = whitened.reshape(len(cuts), -1).max(axis=1) / np.maximum(whitened.reshape(len(cuts), -1).std(axis=1),
                                                                        1e-12)
    shifts = _parabolic_peaks(scipy.fft.ifft2(cross).real)  # where reference and image correlate best
    centres, offsets = [], []
    for k, cut in enumerate(cuts):
        if strength[k] >= SHARP_PEAK and precise:
            shift, _, _ = phase_cross_correlation(spectra_reference[k], spectra_image[k], space="fourier",
                                                  upsample_factor=UPSAMPLE, normalization=None)
            dx, dy = -float(shift[1]), -float(shift[0])
        elif strength[k] >= SHARP_PEAK:
            dx, dy = -float(shifts[k, 1]), -float(shifts[k, 0])
        elif strength[k] >= MIN_PEAK_STRENGTH:
            dx, dy = _edge_offset(_edges(reference[cut]), _edges(image[cut]), TIE_UPSAMPLE)
        else:
            continue
        if max(abs(dx), abs(dy)) > size / 4:
            continue
        centres.append((cut[1].start + size / 2, cut[0].start + size / 2))
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
    if mode == Mode.local:
        if points.count < 3:
            raise MusyqError(f"only {points.count} tie points with a clear correlation: too few for an affine fit "
                             "(try --mode global)")
        source, target = points.centres, points.centres - points.offsets
        model, inliers = ransac((source, target), AffineTransform, min_samples=3,
                                residual_threshold=RANSAC_THRESHOLD, max_trials=1000, rng=0)
        if model is None or inliers is None or inliers.sum() < 3:
            raise MusyqError("no affine transform explains three or more tie points")
        fitted = AffineTransform.from_estimate(source[inliers], target[inliers])
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


def load_reference_band(path: Path, geobox: GeoBox, band: str) -> Image:
    """Band ``band`` of ``path`` resampled onto ``geobox`` (cubic from a coarser raster, else averaged)."""
    try:
        with rasterio.open(path) as source:
            index = _band_index(source, band, path)
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
            image = dataset.read(index, masked=True).astype(np.float32).filled(np.nan)
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
