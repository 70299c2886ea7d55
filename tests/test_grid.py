from __future__ import annotations

import json

import pytest
import rasterio
from odc.geo.geom import box

from musyq.core.errors import GridError
from musyq.core.grid import TILE_SIZE_M, get_tile, tiles_touching
from musyq.io.readers.sentinel2 import parse_tile_metadata
from tests.conftest import DATA, SAMPLES


@pytest.mark.parametrize(("metadata", "tile_id"), [
    ("T46RER_MTD_TL.xml", "46RER"), ("T10SDG_metadata.xml", "10SDG"), ("T01KAB_MTD_TL.xml", "01KAB"),
])
def test_tile_corners_match_esa_granule_metadata(metadata: str, tile_id: str) -> None:
    info = parse_tile_metadata((DATA / "s2-metadata" / metadata).read_bytes())
    tile = get_tile(tile_id)
    assert (tile.epsg, tile.ulx, tile.uly) == (info.epsg, *info.upper_left[10])


def test_tile_corner_matches_archive_tile_geometry() -> None:
    info = json.loads((SAMPLES / "S2A_MSIL1C_20170729_T19UDP_900m" / "tileInfo.json").read_text())
    corners = info["tileGeometry"]["coordinates"][0]
    tile = get_tile("19UDP")
    assert (tile.ulx, tile.uly) == tuple(corners[0])
    with rasterio.open(SAMPLES / "S2A_MSIL1C_20170729_T19UDP_900m" / "B02.jp2") as dataset:
        assert tile.geobox(900).affine == dataset.transform and tile.geobox(900).shape == dataset.shape


@pytest.mark.parametrize(("tile_id", "bounds"), [
    ("18SVG", (399960, 4090200, 509760, 4200000)),
    ("31UFS", (600000, 5590200, 709800, 5700000)),
    ("32UPC", (600000, 5690220, 709800, 5800020)),
])
@pytest.mark.parametrize(("resolution", "pixels"), [(10, 10980), (16, 6863), (20, 5490), (30, 3660), (60, 1830)])
def test_tile_geometry_at_any_pixel_size(tile_id: str, bounds: tuple[int, ...], resolution: float, pixels: int) -> None:
    geobox = get_tile(tile_id).geobox(resolution)
    assert geobox.shape == (pixels, pixels)
    left, bottom, right, top = geobox.boundingbox
    assert (left, top) == (bounds[0], bounds[3])
    assert right == pytest.approx(bounds[0] + pixels * resolution) and right >= bounds[2]


def test_tiles_touching_a_small_area_inside_31UFS() -> None:
    # the openEO reference grid (UL 655360, 5686280; 512 x 1024 px at 10 m) lies inside 31UFS only
    area = box(655360, 5686280 - 10240, 655360 + 5120, 5686280, "EPSG:32631")
    assert [t.id for t in tiles_touching(area)] == ["31UFS"]


def test_tiles_touching_cover_overlaps_and_zone_edges() -> None:
    tile = get_tile("31UFS")
    # a point in the 9.8 km overlap east of 31UFS belongs to its eastern neighbour too
    corner = box(tile.ulx + TILE_SIZE_M - 500, tile.uly - 60_000, tile.ulx + TILE_SIZE_M - 400, tile.uly - 59_900,
                 tile.crs)
    assert {"31UFS", "31UGS"} <= {t.id for t in tiles_touching(corner)}
    # a box straddling 6 degrees east gets tiles of both UTM zones
    straddle = box(5.9, 50.55, 6.5, 50.56, "EPSG:4326")
    ids = {t.id for t in tiles_touching(straddle)}
    assert any(i.startswith("31") for i in ids) and any(i.startswith("32") for i in ids)


def test_unknown_tile_id() -> None:
    with pytest.raises(GridError, match="not a Sentinel-2 tile id"):
        get_tile("99ZZZ")
    assert get_tile("T18SVG").id == "18SVG"
