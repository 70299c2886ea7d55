from __future__ import annotations

from pathlib import Path

import pytest

from musyq.core.errors import InputError, UnknownProductError
from musyq.io.readers import open_scene
from musyq.io.readers.landsat import LandsatReader, parse_mtl
from musyq.io.readers.odl import parse_odl, read_metadata_file
from musyq.io.readers.sentinel2 import parse_product_metadata, parse_tile_metadata
from tests.conftest import DATA

LANDSAT = DATA / "landsat-metadata"
S2 = DATA / "s2-metadata"


@pytest.mark.parametrize("path", sorted(LANDSAT.glob("*MTL*")), ids=lambda p: p.name)
def test_every_mtl_parses(path: Path) -> None:
    meta = parse_mtl(read_metadata_file(path), path)
    assert meta.spacecraft.startswith("LANDSAT_")
    assert {"B2", "B4"} <= set(meta.band_files)
    assert 0 < meta.sun_elevation < 90
    mult, add = meta.reflectance["B4"]
    assert mult == pytest.approx(2e-5) and add == pytest.approx(-0.1)  # the Level-1 rescaling, not L2 SR's
    assert meta.thermal["B10"][0] > 700
    # OLI's 16-bit quantization top, which the saturation flag compares the DN against
    assert meta.quantize_max["B4"] == 65535 and meta.quantize_max["B1"] == 65535


def test_text_xml_and_json_encodings_agree() -> None:
    for stem in ("LC09_L1TP_112081_20220209_20220209_02_T1_MTL", "LC08_L2SP_001062_20201031_20201106_02_T2_MTL"):
        parsed = [parse_mtl(read_metadata_file(p), p) for p in sorted(LANDSAT.glob(stem + ".*"))]
        assert len(parsed) >= 2
        assert all(p == parsed[0] for p in parsed[1:])
    text = parse_mtl(read_metadata_file(LANDSAT / "LC80100202015018LGN00_MTL.txt"), LANDSAT)
    json_ = parse_mtl(read_metadata_file(LANDSAT / "LC80100202015018LGN00_MTL.json"), LANDSAT)
    assert text.reflectance == json_.reflectance and text.acquired == json_.acquired


def test_scene_time_is_read_to_the_microsecond() -> None:
    meta = parse_mtl(read_metadata_file(LANDSAT / "LC09_L1TP_112081_20220209_20220209_02_T1_MTL.txt"), LANDSAT)
    assert meta.acquired.isoformat() == "2022-02-09T02:05:18.736033"


def test_level2_product_is_refused(tmp_path: Path) -> None:
    mtl = tmp_path / "LC08_L2SP_001062_20201031_20201106_02_T2_MTL.txt"
    mtl.write_text((LANDSAT / mtl.name).read_text())
    with pytest.raises(UnknownProductError, match="Level-2"):
        LandsatReader().open(mtl)


def test_malformed_and_truncated_mtl_name_the_file(tmp_path: Path) -> None:
    text = (LANDSAT / "LC09_L1TP_112081_20220209_20220209_02_T1_MTL.txt").read_text()
    truncated = tmp_path / "LC09_truncated_MTL.txt"
    truncated.write_text(text[: text.index("\n", len(text) // 2) + 1])
    with pytest.raises(InputError, match="LC09_truncated_MTL.txt: file ends inside"):
        read_metadata_file(truncated)
    with pytest.raises(InputError, match="line 2 is not"):
        parse_odl("GROUP = A\n  garbage line\nEND_GROUP = A\n", "x_MTL.txt")
    broken = tmp_path / "LC09_broken_MTL.xml"
    broken.write_text("<LANDSAT_METADATA_FILE><PRODUCT_CONTENTS>")
    with pytest.raises(InputError, match="LC09_broken_MTL.xml: malformed"):
        read_metadata_file(broken)


def test_sentinel2_product_metadata_across_baselines() -> None:
    old = parse_product_metadata((S2 / "T46RER_MTD_MSIL1C.xml").read_bytes())
    assert (old.processing_baseline, old.quantification, old.offsets["B12"]) == ("03.01", 10000, 0)
    assert len(old.image_files) == 13 and old.image_files["B8A"].endswith("_B8A")
    new = parse_product_metadata((S2 / "T01KAB_MTD_MSIL2A.xml").read_bytes())
    assert (new.processing_baseline, new.offsets["B02"]) == ("05.09", -1000)
    l2a_old = parse_product_metadata((S2 / "T22HBD_MTD_MSIL2A.xml").read_bytes())
    assert l2a_old.offsets["B04"] == 0 and l2a_old.spacecraft == "Sentinel-2B"


@pytest.mark.parametrize(("name", "tile", "upper_left"), [
    ("T46RER_MTD_TL.xml", "46RER", (499980, 3100020)),
    ("T10SDG_metadata.xml", "10SDG", (399960, 4200000)),
    ("T01KAB_MTD_TL.xml", "01KAB", (99960, 8200000)),
])
def test_sentinel2_tile_metadata_and_angle_grids(name: str, tile: str, upper_left: tuple[int, int]) -> None:
    info = parse_tile_metadata((S2 / name).read_bytes())
    assert info.tile_id == tile and info.upper_left[10] == upper_left and info.shape[10] == (10980, 10980)
    grids = info.angles
    assert grids.sun_zenith.shape == (23, 23) and grids.step == 5000
    assert grids.sun_zenith.mean() == pytest.approx(info.mean_sun_zenith, abs=0.05)
    assert 0 <= grids.view_zenith.min() and grids.view_zenith.max() < 13


def test_unknown_input_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnknownProductError, match="notes.txt: not a recognised product"):
        open_scene(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="no such file"):
        open_scene(tmp_path / "absent.SAFE")


@pytest.mark.parametrize(("name", "top"), [("LT05_L1TP_193024_20050516_20161127_01_T1_MTL.txt", 255),
                                           ("LE07_L1TP_193024_20100420_20161215_01_T1_MTL.txt", 255),
                                           ("LC08_L1TP_193024_20200509_20200509_01_RT_MTL.txt", 65535)])
def test_the_quantization_top_of_each_landsat_generation(name: str, top: int) -> None:
    """TM and ETM+ quantize to 8 bits, OLI to 16 (Collection 1 MTLs): a band at its top DN saturated."""
    path = DATA / "ukis-pysat" / name
    meta = parse_mtl(read_metadata_file(path), path)
    reflective = [b for b in meta.band_files if b in meta.reflectance]
    assert reflective and all(meta.quantize_max[b] == top for b in reflective)
