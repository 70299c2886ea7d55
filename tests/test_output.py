"""COG writing: the overviews musyq makes agree with GDAL's own, the files are valid sparse COGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_validate

from musyq.io.output import FILL, Layer, overview_shapes, write_cog

from .conftest import DATA


def real_reflectance(shape: tuple[int, int]) -> np.ndarray:
    """Real Sentinel-2 surface reflectance (x 10000) mirror-tiled to ``shape``, four bands."""
    with rasterio.open(DATA / "gaofen-simulation/ref_check_icor_S2_B02.tif") as source:
        values = source.read(1)
    bands = [np.pad(np.roll(values, 37 * b, axis=0), ((0, shape[0]), (0, shape[1])), mode="symmetric")
             [: shape[0], : shape[1]] for b in range(4)]
    return np.stack(bands).astype(np.uint16)


def gdal_overviews(data: np.ndarray, nodata: float, resampling: Resampling, factors: list[int]) -> list[np.ndarray]:
    """GDAL's own overviews of ``data``, built on an in-memory GeoTIFF."""
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", count=data.shape[0], height=data.shape[1], width=data.shape[2],
                         dtype=data.dtype.name, nodata=nodata) as dataset:
            dataset.write(data)
            dataset.build_overviews(factors, resampling)
        return [rasterio.open(memory.name, overview_level=level).read() for level in range(len(factors))]


def written(path: Path) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    with rasterio.open(path) as dataset:
        factors = dataset.overviews(1)
    levels = [rasterio.open(path, overview_level=level).read() for level in range(len(factors))]
    return rasterio.open(path).read(), levels, factors


def geobox(shape: tuple[int, int]) -> GeoBox:
    return GeoBox(shape, Affine(16, 0, 399_960, 0, -16, 5_700_000), "EPSG:32631")


def test_average_overviews_match_gdal_on_real_reflectance(tmp_path: Path) -> None:
    shape = (2048, 1536)  # halves evenly to the block size: GDAL's windows are the same 2 x 2 blocks
    values = real_reflectance(shape)
    values[:, 300:700, 200:900] = 0  # a hole of fill, left out of the averages
    path = write_cog(tmp_path / "sr.tif", Layer("SR", values, 0, ("blue", "green", "red", "nir"), 1e-4), geobox(shape))
    assert cog_validate(str(path))[0]
    full, levels, factors = written(path)
    assert factors == [2, 4]
    np.testing.assert_array_equal(full, values)
    for ours, gdal in zip(levels, gdal_overviews(values, 0, Resampling.average, factors), strict=True):
        assert ours.shape == gdal.shape
        assert np.abs(ours.astype(int) - gdal).max() <= 1  # rounding of exact halves
        assert np.mean(ours != gdal) < 0.01
    # level 2: the mean of the valid pixels of each 2 x 2 block, straight from the full resolution
    blocks = values[0].reshape(1024, 2, 768, 2).astype(float)
    valid = blocks > 0
    counts = valid.sum(axis=(1, 3))
    expected = np.where(counts > 0, (blocks * valid).sum(axis=(1, 3)) / np.maximum(counts, 1), 0)
    assert np.abs(levels[0][0] - expected).max() <= 0.5


def test_mode_overviews_of_a_quality_layer_and_the_odd_edge(tmp_path: Path) -> None:
    shape = (1501, 1031)  # odd: the last row and column of each level stand alone
    quality = np.full(shape, 1, dtype=np.uint8)
    quality[-1], quality[:, -1] = 5, 5
    quality[-2], quality[:, -2] = 1, 1
    quality[::2, ::2] = 5  # one cloud pixel in every 2 x 2 block: clear wins
    quality[400:600, 400:600] = FILL
    quality[401:600:2, 401:600] = 5  # two of two valid pixels are cloud, two fill: cloud
    quality[700:720, 700:720] = 2
    quality[700:720:2, 700:720] = 5  # a tie between water and cloud goes to cloud
    path = write_cog(tmp_path / "mask.tif", Layer("MASK", quality, FILL, ("quality",), resampling="mode"),
                     geobox(shape))
    full, levels, factors = written(path)
    assert [level.shape[1:] for level in levels] == overview_shapes(*shape) == [(751, 516), (376, 258)]
    level = levels[0][0]
    assert (level[:200, :200] == 1).all()
    assert (level[201:299, 201:299] == 5).all()
    assert (level[350:360, 350:360] == 5).all()
    assert (level[-1] == 5).all() and (level[:, -1] == 5).all()  # the odd edge's lone pixels, not their neighbours
    assert (level[-2, :-1] == 1).all() and (levels[1][0][-1] == 5).all()


def test_a_window_of_data_makes_a_sparse_cog_with_the_same_pixels(tmp_path: Path) -> None:
    shape = (3000, 3000)
    values = real_reflectance((1200, 900))
    window = (slice(1111, 2311), slice(1537, 2437))  # odd offsets: 2 x 2 blocks straddle the window's edge
    layer = Layer("SR", values, 0, ("blue", "green", "red", "nir"), 1e-4)
    sparse = write_cog(tmp_path / "window.tif", layer, geobox(shape), window=window)
    whole = np.zeros((4, *shape), dtype=np.uint16)
    whole[:, window[0], window[1]] = values
    dense = write_cog(tmp_path / "whole.tif", Layer("SR", whole, 0, layer.descriptions, 1e-4), geobox(shape))
    assert cog_validate(str(sparse))[0]
    sparse_full, sparse_levels, _ = written(sparse)
    dense_full, dense_levels, _ = written(dense)
    np.testing.assert_array_equal(sparse_full, dense_full)
    for a, b in zip(sparse_levels, dense_levels, strict=True):
        np.testing.assert_array_equal(a, b)
    with rasterio.open(sparse) as dataset:
        stored = [dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1) for row in range(6)
                  for col in range(6)]
        assert sum(bool(offset) and offset != "0" for offset in stored) == 6  # of 36: the blocks the window touches
        assert dataset.scales == (1e-4,) * 4 and dataset.descriptions == layer.descriptions
        assert dataset.nodata == 0
