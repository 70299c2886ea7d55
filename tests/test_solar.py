from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pvlib
import pytest

from musyq.io.readers.landsat import parse_mtl
from musyq.io.readers.odl import read_metadata_file
from musyq.core.solar import earth_sun_distance, solar_angles
from tests.conftest import DATA


def test_solar_position_matches_nrel_spa_over_a_year_and_the_globe() -> None:
    rng = np.random.default_rng(7)
    lat, lon = rng.uniform(-70, 70, 300), rng.uniform(-180, 180, 300)
    for when in (datetime(2016, 1, 12, 15, 35), datetime(2021, 6, 21, 4, 0), datetime(2030, 9, 30, 22, 10)):
        zenith, azimuth = solar_angles(when, lat, lon)
        spa = pvlib.solarposition.spa_python(pd.DatetimeIndex([when] * lat.size, tz="UTC"), lat, lon)
        assert np.abs(zenith - spa["zenith"].to_numpy()).max() < 0.03
        day = zenith < 85
        diff = (azimuth - spa["azimuth"].to_numpy() + 180) % 360 - 180
        assert np.abs(diff[day]).max() < 0.05


@pytest.mark.parametrize("name", ["LC09_L1TP_112081_20220209_20220209_02_T1_MTL.txt", "LC80100202015018LGN00_MTL.txt",
                                  "LC08_L1TP_090084_20160121_20200907_02_T1_MTL.txt"])
def test_scene_centre_sun_matches_landsat_metadata(name: str) -> None:
    path = DATA / "landsat-metadata" / name
    meta = parse_mtl(read_metadata_file(path), path)
    lon = np.mean([c[0] for c in meta.corners_lonlat])
    lat = np.mean([c[1] for c in meta.corners_lonlat])
    zenith, azimuth = solar_angles(meta.acquired, lat, lon)
    # the mean of the product corners is only near the scene centre that USGS used
    assert 90 - zenith == pytest.approx(meta.sun_elevation, abs=0.2)
    assert azimuth == pytest.approx(meta.sun_azimuth, abs=0.3)
    assert earth_sun_distance(meta.acquired.timetuple().tm_yday) == pytest.approx(meta.earth_sun_distance, abs=2e-4)
