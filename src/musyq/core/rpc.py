"""Rational polynomial camera models (RPC00B): evaluation, fitting, windows and lines of sight.

GDAL's RPC transformer (through rasterio) does the orthorectification itself; what no library offers
is the model as numbers to compute with: the image window a tile needs, the sensor's line of sight
for per-pixel view angles, a model fitted to a physical camera, and the model of a sub-window or of a
decimated read. Those are written here on rasterio's ``RPC`` record. Image coordinates follow the RPC
convention: line and sample (0, 0) is the centre of the upper-left pixel.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from rasterio.rpc import RPC

from musyq.core.errors import MusyqError

F64 = NDArray[np.float64]
TERMS = 20
# metres of height over which a line of sight is followed to get its direction: long enough to stay well
# above the model's rounding, short enough for the model's curvature not to matter
SIGHT_STEP_M = 1000.0
RIDGE = 1e-10  # keeps the fit well posed where the camera leaves a term unconstrained


class RpcError(MusyqError, ValueError):
    """An RPC model cannot be fitted or used as asked."""


def terms(lon: F64, lat: F64, height: F64) -> F64:
    """The 20 RPC00B polynomial terms of normalised coordinates, in GDAL's order (last axis)."""
    L, P, H = lon, lat, height
    one = np.ones_like(L)
    return np.stack([one, L, P, H, L * P, L * H, P * H, L * L, P * P, H * H, P * L * H, L**3, L * P * P, L * H * H,
                     L * L * P, P**3, P * H * H, L * L * H, P * P * H, H**3], axis=-1)


def _normalised(rpc: RPC, lon: ArrayLike, lat: ArrayLike, height: ArrayLike) -> F64:
    lon, lat, height = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (lon, lat, height)))
    return terms((lon - rpc.long_off) / rpc.long_scale, (lat - rpc.lat_off) / rpc.lat_scale,
                 (height - rpc.height_off) / rpc.height_scale)


def project(rpc: RPC, lon: ArrayLike, lat: ArrayLike, height: ArrayLike) -> tuple[F64, F64]:
    """Image line and sample of ground points (degrees, metres above the ellipsoid)."""
    t = _normalised(rpc, lon, lat, height)
    line = (t @ np.asarray(rpc.line_num_coeff)) / (t @ np.asarray(rpc.line_den_coeff))
    sample = (t @ np.asarray(rpc.samp_num_coeff)) / (t @ np.asarray(rpc.samp_den_coeff))
    return line * rpc.line_scale + rpc.line_off, sample * rpc.samp_scale + rpc.samp_off


def _fit_ratio(t: F64, value: F64) -> tuple[F64, F64]:
    """Numerator and denominator (constant term 1) with ``num / den = value``, linearised least squares."""
    design = np.concatenate([t, -value[:, None] * t[:, 1:]], axis=1)
    gram = design.T @ design
    gram[np.diag_indices_from(gram)] += RIDGE * np.trace(gram) / gram.shape[0]
    solution = np.linalg.solve(gram, design.T @ value)
    return solution[:TERMS], np.concatenate([[1.0], solution[TERMS:]])


def fit(lon: ArrayLike, lat: ArrayLike, height: ArrayLike, line: ArrayLike, sample: ArrayLike) -> RPC:
    """The RPC model of a camera known at ground/image point pairs (a grid through the scene's heights).

    The terrain-independent fit vendors use: normalise, then solve numerator and denominator of each
    image coordinate by linear least squares.
    """
    lon, lat, height, line, sample = (np.asarray(v, dtype=np.float64).ravel() for v in (lon, lat, height, line, sample))
    if lon.size < 2 * TERMS * 2:
        raise RpcError(f"fitting an RPC model needs at least {4 * TERMS} points, got {lon.size}")

    def centre_and_scale(values: F64) -> tuple[float, float]:
        low, high = float(values.min()), float(values.max())
        return 0.5 * (low + high), max(0.5 * (high - low), 1e-9)

    (lon_off, lon_scale), (lat_off, lat_scale) = centre_and_scale(lon), centre_and_scale(lat)
    (height_off, height_scale), (line_off, line_scale) = centre_and_scale(height), centre_and_scale(line)
    samp_off, samp_scale = centre_and_scale(sample)
    height_scale = max(height_scale, 500.0)  # a flat scene still needs a height axis
    t = terms((lon - lon_off) / lon_scale, (lat - lat_off) / lat_scale, (height - height_off) / height_scale)
    line_num, line_den = _fit_ratio(t, (line - line_off) / line_scale)
    samp_num, samp_den = _fit_ratio(t, (sample - samp_off) / samp_scale)
    return RPC(height_off=height_off, height_scale=height_scale, lat_off=lat_off, lat_scale=lat_scale,
               line_den_coeff=line_den.tolist(), line_num_coeff=line_num.tolist(), line_off=line_off,
               line_scale=line_scale, long_off=lon_off, long_scale=lon_scale, samp_den_coeff=samp_den.tolist(),
               samp_num_coeff=samp_num.tolist(), samp_off=samp_off, samp_scale=samp_scale, err_bias=-1.0,
               err_rand=-1.0)


def windowed(rpc: RPC, row: float, col: float) -> RPC:
    """The model of the image part whose upper-left pixel is ``(row, col)`` of the full image."""
    return replace_rpc(rpc, line_off=rpc.line_off - row, samp_off=rpc.samp_off - col)


def decimated(rpc: RPC, row_factor: float, col_factor: float) -> RPC:
    """The model of the image read with ``row_factor`` x ``col_factor`` pixels merged into one."""
    # pixel centres: full-image coordinate c maps to (c + 0.5) / f - 0.5 in the decimated image
    return replace_rpc(rpc, line_off=(rpc.line_off + 0.5) / row_factor - 0.5, line_scale=rpc.line_scale / row_factor,
                       samp_off=(rpc.samp_off + 0.5) / col_factor - 0.5, samp_scale=rpc.samp_scale / col_factor)


def shifted(rpc: RPC, lines: float, samples: float) -> RPC:
    """The model with every image coordinate moved by ``lines``, ``samples`` (a geolocation bias)."""
    return replace_rpc(rpc, line_off=rpc.line_off + lines, samp_off=rpc.samp_off + samples)


def replace_rpc(rpc: RPC, **changes: float) -> RPC:
    fields = {name: getattr(rpc, name) for name in (
        "height_off", "height_scale", "lat_off", "lat_scale", "line_den_coeff", "line_num_coeff", "line_off",
        "line_scale", "long_off", "long_scale", "samp_den_coeff", "samp_num_coeff", "samp_off", "samp_scale",
        "err_bias", "err_rand")}
    fields.update(changes)
    return RPC(**fields)


def image_window(rpc: RPC, lon: ArrayLike, lat: ArrayLike, heights: tuple[float, float], shape: tuple[int, int],
                 margin: int = 3) -> tuple[int, int, int, int] | None:
    """Rows ``row0, row1`` and columns ``col0, col1`` of the image that ground points can fall in, at
    any height in ``heights``, with ``margin`` pixels for resampling kernels; None when outside."""
    lines, samples = [], []
    for height in heights:
        line, sample = project(rpc, lon, lat, height)
        lines.append(line)
        samples.append(sample)
    line_all, sample_all = np.concatenate([np.ravel(v) for v in lines]), np.concatenate([np.ravel(v) for v in samples])
    row0 = max(int(np.floor(line_all.min())) - margin, 0)
    row1 = min(int(np.ceil(line_all.max())) + 1 + margin, shape[0])
    col0 = max(int(np.floor(sample_all.min())) - margin, 0)
    col1 = min(int(np.ceil(sample_all.max())) + 1 + margin, shape[1])
    if row0 >= row1 or col0 >= col1:
        return None
    return row0, row1, col0, col1


def sight_slope(rpc: RPC, lon: ArrayLike, lat: ArrayLike, height: ArrayLike) -> tuple[F64, F64]:
    """How far east and north (metres per metre of height) a ground point moves along the line of sight.

    Going up by ``dh`` along the sight, the image point must stay put: with ``J`` the image Jacobian in
    ground (east, north) and ``g`` its derivative in height, the move is ``-J^-1 g dh``.
    """
    lon, lat, height = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (lon, lat, height)))
    metres_per_degree_lat = 111_132.954 - 559.822 * np.cos(np.radians(2 * lat))
    metres_per_degree_lon = 111_412.84 * np.cos(np.radians(lat))
    step_lon, step_lat = 10.0 / metres_per_degree_lon, 10.0 / metres_per_degree_lat  # 10 m steps
    base = project(rpc, lon, lat, height)
    east = project(rpc, lon + step_lon, lat, height)
    north = project(rpc, lon, lat + step_lat, height)
    up = project(rpc, lon, lat, height + SIGHT_STEP_M)
    j11, j12 = (east[0] - base[0]) / 10.0, (north[0] - base[0]) / 10.0
    j21, j22 = (east[1] - base[1]) / 10.0, (north[1] - base[1]) / 10.0
    g1, g2 = (up[0] - base[0]) / SIGHT_STEP_M, (up[1] - base[1]) / SIGHT_STEP_M
    determinant = j11 * j22 - j12 * j21
    with np.errstate(divide="ignore", invalid="ignore"):
        d_east = -(j22 * g1 - j12 * g2) / determinant
        d_north = -(-j21 * g1 + j11 * g2) / determinant
    return d_east, d_north


def view_angles(rpc: RPC, lon: ArrayLike, lat: ArrayLike, height: ArrayLike) -> tuple[F64, F64]:
    """View zenith and azimuth (degrees, from the ground towards the sensor) from the model's sight lines."""
    d_east, d_north = sight_slope(rpc, lon, lat, height)
    return np.degrees(np.arctan(np.hypot(d_east, d_north))), np.degrees(np.arctan2(d_east, d_north)) % 360

