"""View angles from a Landsat ANG ephemeris, checked against the geometry the same file describes."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox

from musyq.core.angles import EphemerisAngles
from musyq.io.readers.landsat import read_track
from musyq.io.readers.odl import find_value, read_metadata_file

from .conftest import DATA

ANG = DATA / "landsat-metadata" / "LC09_L1TP_112081_20220209_20220209_02_T1_ANG.txt"
ACQUIRED = datetime(2022, 2, 9, 2, 5, 20)
PIXEL = 30.0


@pytest.fixture(scope="module")
def geometry() -> dict[str, np.ndarray]:
    groups = read_metadata_file(ANG)
    ul_x, ul_y = find_value(groups, "UL_CORNER")
    lines = np.array(find_value(groups, "BAND04_L1T_IMAGE_CORNER_LINES"))  # top, right, bottom, left vertices
    samples = np.array(find_value(groups, "BAND04_L1T_IMAGE_CORNER_SAMPS"))
    geobox = GeoBox((7781, 7721), Affine(PIXEL, 0, ul_x, 0, -PIXEL, ul_y), "EPSG:32650")
    angles = EphemerisAngles(ACQUIRED, read_track(ANG)).on(geobox)
    centre = np.array(find_value(groups, "BAND04_MEAN_L1T_LINE_SAMP"))
    mean_vector = np.array(find_value(groups, "BAND04_MEAN_SAT_VECTOR"))
    return {"zenith": angles.view_zenith, "azimuth": angles.view_azimuth, "lines": lines, "samples": samples,
            "centre": centre, "mean_vector": mean_vector}


def at(layer: np.ndarray, line: float, sample: float) -> float:
    return float(layer[int(round(line)), int(round(sample))])


def test_scene_centre_is_seen_at_nadir_as_the_angle_model_says(geometry: dict[str, np.ndarray]) -> None:
    vector = geometry["mean_vector"]
    rpc_zenith = np.degrees(np.arctan2(np.hypot(vector[0], vector[1]), vector[2]))  # 0.10 deg
    assert at(geometry["zenith"], *geometry["centre"]) == pytest.approx(rpc_zenith, abs=0.2)


def test_swath_edges_are_seen_across_track_at_the_oli_half_field_of_view(geometry: dict[str, np.ndarray]) -> None:
    lines, samples = geometry["lines"], geometry["samples"]
    # the west data edge runs from the top vertex to the left vertex: its map direction is the ground track
    heading = np.degrees(np.arctan2((samples[3] - samples[0]) * PIXEL, -(lines[3] - lines[0]) * PIXEL)) % 360
    west = ((lines[0] + lines[3]) / 2, (samples[0] + samples[3]) / 2 + 15)
    east = ((lines[1] + lines[2]) / 2, (samples[1] + samples[2]) / 2 - 15)
    zenith_west, zenith_east = at(geometry["zenith"], *west), at(geometry["zenith"], *east)
    # OLI's 15 deg field of view: 7.5 deg off nadir at the satellite, which the Earth's curvature turns
    # into asin(7083 / 6373 sin 7.5 deg) = 8.35 deg at the ground; data edges reach a little beyond
    assert 8.0 < zenith_west < 8.8 and 8.0 < zenith_east < 8.8
    assert zenith_west == pytest.approx(zenith_east, abs=0.3)
    # from the west edge the satellite is seen to the right of the track, from the east edge to the left
    assert at(geometry["azimuth"], *west) == pytest.approx((heading - 90) % 360, abs=1.5)
    assert at(geometry["azimuth"], *east) == pytest.approx((heading + 90) % 360, abs=1.5)
    # halfway from the track to an edge, the view zenith is about half the edge value
    middle = ((west[0] + east[0]) / 2, (3 * west[1] + east[1]) / 4)
    assert at(geometry["zenith"], *middle) == pytest.approx(zenith_west / 2, abs=0.4)
