"""Cloud, shadow, snow and water codes against hand labels, Sen2Cor and CFMask, and on hard clear scenes."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from scipy import ndimage, signal
from typer.testing import CliRunner

from musyq.cli import app
from musyq.cli.demo import CROP_TIME
from musyq.ard.cloudmask import (
    MaskInputs,
    MaskMethod,
    MaskResult,
    compute_mask,
    learn_thresholds,
    with_bands,
)
from musyq.core.errors import MissingBandError
from musyq.ard.maskfile import read_reflectance
from musyq.io.output import CLEAR, CLOUD, CLOUD_SHADOW, FILL, SNOW, WATER
from musyq.ard.pipeline import MASK_HALO_M, ArdOptions, mask_inputs, toa_on_tile
from musyq.io.readers import StackOptions, open_scene
from musyq.ard.shadow import ShadowGeometry

DATA = Path(__file__).parent / "data"
UKIS_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
VNIR = ("blue", "green", "red", "nir")
# The ukis-csmask files carry no sun angles. The azimuths are the direction from clouds to their
# shadows read off each image (cross-correlating bright and dark pixels, no labels); the zenith only
# scales the cloud-height search range, so a typical value serves.
UKIS_SUN_AZIMUTH = {"landsat5": 135.0, "landsat7": 142.0}
UKIS_SUN_ZENITH = 40.0
COLOURS = {FILL: (0, 0, 0), CLEAR: (60, 160, 60), WATER: (0, 200, 255), CLOUD_SHADOW: (40, 40, 160),
           SNOW: (255, 0, 255), CLOUD: (255, 255, 255)}


def quicklook_dir() -> Path:
    """Where side-by-side quicklooks go: ``$MUSYQ_TEST_OUTPUT/quicklooks`` (default ``test-output``)."""
    folder = Path(os.environ.get("MUSYQ_TEST_OUTPUT", "test-output")) / "quicklooks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_quicklook(name: str, rgb: np.ndarray, *codes: np.ndarray) -> Path:
    """True colour next to each quality-code image, for a person to look at the disagreements."""
    panels = [np.clip(np.nan_to_num(rgb) / 0.3 * 255, 0, 255).astype(np.uint8)]
    for code in codes:
        panel = np.zeros((*code.shape, 3), dtype=np.uint8)
        for value, colour in COLOURS.items():
            panel[code == value] = colour
        panels.append(panel)
    path = quicklook_dir() / f"{name}.png"
    Image.fromarray(np.concatenate(panels, axis=1)).save(path)
    return path


def ukis(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Reflectance by band name and the reference codes (labels mapped to musyq codes)."""
    with np.load(DATA / "ukis-csmask" / f"{name}.npz") as data:
        image, labels = data["img"].astype(np.float32), data["msk"][..., 0]
    bands = {n: np.ascontiguousarray(image[..., i]) for i, n in enumerate(UKIS_BANDS)}
    reference = np.select([labels == 0, labels == 1, labels == 4], [CLOUD_SHADOW, WATER, CLOUD], CLEAR)
    return bands, reference.astype(np.uint8)


def three_classes(codes: np.ndarray) -> np.ndarray:
    """Clear (with water and snow), shadow, cloud: the classes the hand labels separate."""
    return np.where(np.isin(codes, (CLOUD, CLOUD_SHADOW)), codes, CLEAR)


def scores(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    ours, truth = three_classes(predicted).ravel(), three_classes(reference).ravel()
    classes = (CLEAR, CLOUD_SHADOW, CLOUD)
    matrix = np.array([[np.sum((truth == a) & (ours == b)) for b in classes] for a in classes], dtype=float)
    total = matrix.sum()
    accuracy = np.trace(matrix) / total
    chance = (matrix.sum(axis=0) * matrix.sum(axis=1)).sum() / total**2
    out = {"accuracy": accuracy, "kappa": (accuracy - chance) / (1 - chance)}
    for i, name in enumerate(("clear", "shadow", "cloud")):
        out[f"{name}_precision"] = matrix[i, i] / max(matrix[:, i].sum(), 1.0)
        out[f"{name}_recall"] = matrix[i, i] / matrix[i].sum()
    return out


def ukis_mask(name: str, bands: tuple[str, ...] = UKIS_BANDS,
              method: MaskMethod = MaskMethod.musyq) -> tuple[MaskResult, np.ndarray, dict[str, np.ndarray]]:
    reflectance, reference = ukis(name)
    inputs = with_bands(MaskInputs(reflectance, UKIS_SUN_ZENITH, UKIS_SUN_AZIMUTH[name], 30.0), bands)
    return compute_mask(inputs, method), reference, reflectance


# Lower bounds just under the measured (OA, kappa, cloud P, cloud R, shadow P, shadow R). The rules alone:
# L5 all bands .867 .79 .90/.93 .79/.82; L5 VNIR .861 .79 .86/.95 .80/.81; L7 all bands .849 .75 .91/.80 .86/.64;
# L7 VNIR .847 .75 .91/.80 .86/.64. The default: L5 all bands .866 .79 .89/.93 .79/.82; L5 VNIR .862 .79
# .86/.95 .80/.83; L7 all bands .847 .75 .96/.76 .82/.71; L7 VNIR .851 .75 .95/.78 .83/.70.
UKIS_BOUNDS = {
    (MaskMethod.rules, "landsat5", 6): (0.86, 0.78, 0.89, 0.92, 0.78, 0.81),
    (MaskMethod.rules, "landsat5", 4): (0.85, 0.78, 0.85, 0.94, 0.79, 0.80),
    (MaskMethod.rules, "landsat7", 6): (0.84, 0.74, 0.90, 0.79, 0.85, 0.63),
    (MaskMethod.rules, "landsat7", 4): (0.84, 0.74, 0.90, 0.79, 0.85, 0.63),
    (MaskMethod.musyq, "landsat5", 6): (0.86, 0.78, 0.88, 0.92, 0.78, 0.81),
    (MaskMethod.musyq, "landsat5", 4): (0.855, 0.78, 0.85, 0.94, 0.79, 0.82),
    (MaskMethod.musyq, "landsat7", 6): (0.84, 0.74, 0.95, 0.75, 0.81, 0.69),
    (MaskMethod.musyq, "landsat7", 4): (0.845, 0.745, 0.94, 0.77, 0.82, 0.69),
}


@pytest.mark.parametrize("method", [MaskMethod.musyq, MaskMethod.rules])
@pytest.mark.parametrize("name", ["landsat5", "landsat7"])
@pytest.mark.parametrize("bands", [UKIS_BANDS, VNIR], ids=["6-band", "VNIR-only"])
def test_hand_labelled_landsat_scenes(name: str, bands: tuple[str, ...], method: MaskMethod) -> None:
    result, reference, reflectance = ukis_mask(name, bands, method)
    measured = scores(result.quality, reference)
    keys = ("accuracy", "kappa", "cloud_precision", "cloud_recall", "shadow_precision", "shadow_recall")
    for key, bound in zip(keys, UKIS_BOUNDS[method, name, len(bands)], strict=True):
        assert measured[key] >= bound, (key, measured)
    rgb = np.stack([reflectance["red"], reflectance["green"], reflectance["blue"]], axis=-1)
    save_quicklook(f"ukis-{name}-{len(bands)}bands-{method.value}", rgb, reference, result.quality)


@pytest.mark.parametrize("name", ["landsat5", "landsat7"])
def test_default_method_beats_plain_fmask(name: str) -> None:
    for bands in (UKIS_BANDS, VNIR):
        ours = scores(ukis_mask(name, bands)[0].quality, ukis(name)[1])
        fmask = scores(ukis_mask(name, bands, MaskMethod.fmask)[0].quality, ukis(name)[1])
        assert ours["accuracy"] > fmask["accuracy"] + 0.1 and ours["kappa"] > fmask["kappa"] + 0.2


@pytest.mark.parametrize("name", ["landsat5", "landsat7"])
def test_labelled_shadows_lie_where_the_assumed_sun_casts_them(name: str) -> None:
    """The hand-labelled shadows sit, relative to the labelled clouds, along the direction musyq projects."""
    _, reference = ukis(name)
    cloud, shadow = (reference == CLOUD).astype(float), (reference == CLOUD_SHADOW).astype(float)
    correlation = signal.fftconvolve(shadow, cloud[::-1, ::-1], mode="full")
    centre, reach = np.array(cloud.shape) - 1, 100
    window = correlation[centre[0] - reach:centre[0] + reach + 1, centre[1] - reach:centre[1] + reach + 1]
    row, col = np.unravel_index(np.argmax(window), window.shape)
    labelled = math.degrees(math.atan2(col - reach, row - reach))
    geometry = ShadowGeometry.from_angles(UKIS_SUN_ZENITH, UKIS_SUN_AZIMUTH[name], 0.0, 0.0, 30.0)
    projected = math.degrees(math.atan2(geometry.col_per_metre, geometry.row_per_metre))
    assert abs((labelled - projected + 180) % 360 - 180) < 8


def test_shadow_geometry_follows_sun_and_view() -> None:
    # sun in the south at 45 degrees: a cloud 3 km up casts its shadow 3 km north, 100 pixels of 30 m up
    south = ShadowGeometry.from_angles(45.0, 180.0, 0.0, 0.0, 30.0)
    assert south.row_per_metre * 3000 == pytest.approx(-100.0) and south.col_per_metre == pytest.approx(0.0, abs=1e-12)
    # seen from the east at 10 degrees the cloud appears shifted west, so its shadow lies further east of it
    tilted = ShadowGeometry.from_angles(45.0, 180.0, 10.0, 90.0, 30.0)
    assert tilted.col_per_metre * 3000 == pytest.approx(math.tan(math.radians(10.0)) * 100.0)


def sen2cor_scene() -> tuple[MaskResult, np.ndarray, dict[str, np.ndarray]]:
    raster = read_reflectance(DATA / "sen2cor-29RKH" / "S2A_29RKH_20200219_L2A_200m.tif")
    with rasterio.open(DATA / "sen2cor-29RKH" / "S2A_29RKH_20200219_L2A_SCL.tif") as scl:
        classes = scl.read(1)
    inputs = MaskInputs(raster.bands, 90.0 - 48.293, 147.671, raster.pixel_size, valid=raster.valid)
    return compute_mask(inputs), classes, raster.bands


def test_agreement_with_sen2cor_and_a_bright_desert_stays_clear() -> None:
    result, classes, bands = sen2cor_scene()
    sen2cor_cloud = np.isin(classes, (8, 9, 10))  # medium and high probability cloud, thin cirrus
    ours = result.quality == CLOUD
    agreement = (ours == sen2cor_cloud).mean()
    assert agreement > 0.95
    assert (ours & sen2cor_cloud).sum() / sen2cor_cloud.sum() > 0.4  # Sen2Cor's thin cirrus is wider
    # bare desert soil (Sen2Cor class 5) at least 5 km from any cloud of either mask
    far = ndimage.distance_transform_edt(~(sen2cor_cloud | ours)) * 200.0 > 5000.0
    desert = (classes == 5) & far
    assert desert.sum() > 50_000 and np.median(bands["red"][desert]) > 0.25
    assert (result.quality[desert] == CLOUD).mean() < 0.001
    reference = np.select([sen2cor_cloud, classes == 3, classes == 6, classes == 11],
                          [CLOUD, CLOUD_SHADOW, WATER, SNOW], CLEAR)
    save_quicklook("sen2cor-29RKH", np.stack([bands["red"], bands["green"], bands["blue"]], -1) * 0.6,
                   reference, result.quality)


def test_agreement_with_cfmask_on_landsat8(samples: Path) -> None:
    product = samples / "LC08_L1TP_016037_20170813_20170814_01_RT_900m"
    with pytest.warns(UserWarning, match="no angle bands"):
        scene = open_scene(product)
    geobox = scene.native_geobox("B1")
    toa, temperature, valid, angles = toa_on_tile(scene, geobox, ArdOptions())
    result = compute_mask(mask_inputs(scene, toa, temperature, valid, angles, 900.0))
    with rasterio.open(next(product.glob("*_BQA.TIF"))) as bqa:
        bits = bqa.read(1)
    data = valid & (bits & 1 == 0)
    cfmask_cloud = (bits >> 4) & 1 == 1
    ours = result.quality == CLOUD
    recall = (ours & cfmask_cloud & data).sum() / (cfmask_cloud & data).sum()
    assert recall > 0.95  # at 900 m every pixel with sub-pixel cumulus is cloudy to us, so precision is lower
    assert (ours == cfmask_cloud)[data].mean() > 0.85
    reference = np.where(data, CLEAR, FILL)
    reference[data & ((bits >> 7) & 3 == 3)] = CLOUD_SHADOW
    reference[data & cfmask_cloud] = CLOUD
    names = [s.band.common_name for s in scene.reflective_sources]
    rgb = np.stack([toa[names.index(n)] for n in ("red", "green", "blue")], -1)
    save_quicklook("cfmask-LC08-016037", rgb, reference, result.quality)


def test_dark_winter_scene_is_clear(samples: Path) -> None:
    """Sentinel-2, Virginia, 12 January 2016: a low sun (60 degrees) over dark fields, woods and a bay; no cloud."""
    with pytest.warns(UserWarning):
        scene = open_scene(samples / "S2A_20160112_T18SVG_crop", StackOptions("S2A_MSI", CROP_TIME))
    geobox = scene.native_geobox("B02")
    toa, temperature, valid, angles = toa_on_tile(scene, geobox, ArdOptions())
    inputs = mask_inputs(scene, toa, temperature, valid, angles, 10.0)
    assert inputs.sun_zenith > 55
    result = compute_mask(inputs)
    assert result.fraction(CLOUD) < 0.01 and result.fraction(CLOUD_SHADOW) < 0.01 and result.fraction(SNOW) == 0
    assert result.fraction(WATER) > 0.05  # the bay in the south-east corner
    names = [s.band.common_name for s in scene.reflective_sources]
    save_quicklook("winter-18SVG", np.stack([toa[names.index(n)] for n in ("red", "green", "blue")], -1) * 2,
                   result.quality)


def test_town_and_turbid_water_are_not_cloud() -> None:
    """Sentinel-2 over Mol/Dessel, Belgium, with cumulus: the town and the red settling ponds stay cloud-free."""
    folder = DATA / "openeo-31UFS"
    names = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B8A": "nir08", "B09": "wv", "B11": "swir16"}
    bands = {}
    for band, name in names.items():
        with rasterio.open(folder / f"ref_input_S2_{band}.tif") as source:
            values = source.read(1).astype(np.float32)
        bands[name] = np.where(values == 65535, np.nan, values / 10000)
    sun_azimuth, sun_zenith, view_azimuth, view_zenith = (
        float(rasterio.open(folder / f"ref_input_S2_{n}.tif").read(1).mean())
        for n in ("sunAzimuthAngles", "sunZenithAngles", "viewAzimuthMean", "viewZenithMean"))
    result = compute_mask(MaskInputs(bands, sun_zenith, sun_azimuth, 10.0, view_zenith, view_azimuth))
    assert 0.03 < result.fraction(CLOUD) < 0.3  # the cumulus in the east and south are found
    town = result.quality[165:225, 330:400]
    ponds = (slice(110, 215), slice(35, 125))
    # sediment-laden water: at the surface (iCOR) redder than green and blue, and black at 1.6 um
    surface = {b: np.median(rasterio.open(folder / f"ref_check_icor_S2_{b}.tif").read(1)[ponds]) for b in
               ("B02", "B03", "B04")}
    assert surface["B04"] > surface["B03"] > surface["B02"] and np.median(bands["swir16"][ponds]) < 0.03
    assert (town == CLOUD).mean() < 0.02
    assert (result.quality[ponds] == CLOUD).mean() == 0.0
    save_quicklook("town-31UFS", np.stack([bands["red"], bands["green"], bands["blue"]], -1), result.quality)


def test_mask_command_on_a_user_raster(tmp_path: Path) -> None:
    source = DATA / "sen2cor-29RKH" / "S2A_29RKH_20200219_L2A_200m.tif"
    out, probability = tmp_path / "mask.tif", tmp_path / "prob.tif"
    result = CliRunner().invoke(app, ["mask", str(source), "--sun-zenith", "41.707", "--sun-azimuth", "147.671",
                                      "--out", str(out), "--probability", str(probability)])
    assert result.exit_code == 0, result.output
    assert "cloud" in result.output
    expected, _, _ = sen2cor_scene()
    with rasterio.open(out) as written, rasterio.open(probability) as percent:
        np.testing.assert_array_equal(written.read(1), expected.quality)
        assert written.nodata == 0 and percent.nodata == 255
        cloud_probability = percent.read(1)
    assert np.median(cloud_probability[expected.quality == CLOUD]) >= 50
    assert np.percentile(cloud_probability[expected.quality == CLEAR], 99) < 50

    bad = tmp_path / "two-bands.tif"
    with rasterio.open(source) as src:
        profile = src.profile | {"count": 2}
        with rasterio.open(bad, "w", **profile) as dst:
            dst.write(src.read([3, 4]))
            dst.descriptions = ("red", "nir")
    result = CliRunner().invoke(app, ["mask", str(bad), "--sun-zenith", "40", "--sun-azimuth", "150",
                                      "--out", str(tmp_path / "x.tif")])
    message = result.output.replace("\n", "")
    assert result.exit_code == 1 and "two-bands.tif" in message and "blue, green" in message
    assert not (tmp_path / "x.tif").exists()
    with pytest.raises(MissingBandError):
        compute_mask(MaskInputs({"red": np.zeros((2, 2), np.float32)}, 40, 150, 30))


def test_tiles_of_one_scene_are_judged_alike(samples: Path, tmp_path: Path) -> None:
    """Neighbouring MGRS tiles overlap; with thresholds learnt once per scene, their masks agree there."""
    product = samples / "LC08_L1TP_016037_20170813_20170814_01_RT_900m"
    result = CliRunner().invoke(app, ["ard", str(product), "--out", str(tmp_path), "--resolution", "500",
                                      "--tile", "17SNS", "--tile", "17SNT", "--aod", "off"])
    assert result.exit_code == 0, result.output
    masks = {}
    for tile in ("17SNS", "17SNT"):
        with rasterio.open(next(tmp_path.glob(f"{tile}/*/*.MASK.tif"))) as dataset:
            masks[tile] = (dataset.read(1), dataset.transform)
    (south, south_transform), (north, north_transform) = masks["17SNS"], masks["17SNT"]
    # both tiles are in UTM 17N with 100 km origins: on a 500 m grid the overlap is pixel-aligned
    row_offset = round((north_transform.f - south_transform.f) / -south_transform.e)  # rows north sits higher
    assert row_offset > 0 and north_transform.c == south_transform.c
    overlap_south = south[: south.shape[0] - row_offset]
    overlap_north = north[row_offset:][: overlap_south.shape[0]]
    both = (overlap_south > 0) & (overlap_north > 0)
    assert both.sum() > 1000
    cloud_south, cloud_north = overlap_south == CLOUD, overlap_north == CLOUD
    assert 0.05 < cloud_south[both].mean() < 0.95
    assert (cloud_south == cloud_north)[both].mean() >= 0.985


@pytest.mark.parametrize("name", ["landsat5", "landsat7"])
def test_a_halo_makes_neighbouring_tiles_agree_on_shadows(name: str) -> None:
    """Two overlapping "tiles" of a labelled Landsat scene, masked each on its own: without a halo their
    shadows disagree where a cloud sits in one tile and its shadow in the other; with the ARD halo
    (``MASK_HALO_M`` read around each tile) they agree.

    Measured (shadow agreement in the overlap, cut across rows / across columns): Landsat 5 0.946 / 0.958
    without, 0.994 / 0.990 with; Landsat 7 0.948 / 0.956 without, 0.994 / 0.990 with.
    """
    reflectance, _ = ukis(name)
    scene = MaskInputs(reflectance, UKIS_SUN_ZENITH, UKIS_SUN_AZIMUTH[name], 30.0)
    thresholds = learn_thresholds(scene)
    halo = int(MASK_HALO_M / 30.0)
    for axis in (0, 1):
        def part(values: np.ndarray, cut: slice) -> np.ndarray:
            return np.ascontiguousarray(values[cut] if axis == 0 else values[:, cut])

        agreement = {}
        for margin in (0, halo):
            first, second = (compute_mask(replace(scene, bands={k: part(v, cut) for k, v in reflectance.items()}),
                                          thresholds=thresholds).quality
                             for cut in (slice(0, 300 + margin), slice(212 - margin, 512)))
            overlap_first, overlap_second = part(first, slice(212, 300)), part(second, slice(margin, margin + 88))
            agreement[margin] = ((overlap_first == CLOUD_SHADOW) == (overlap_second == CLOUD_SHADOW)).mean()
            assert (overlap_first == CLOUD).mean() > 0.1 and ((overlap_first == CLOUD) == (overlap_second == CLOUD)
                                                               ).mean() > 0.995
        assert agreement[0] < 0.97 and agreement[halo] >= 0.985, agreement


@pytest.mark.parametrize("method", [MaskMethod.musyq, MaskMethod.rules])
def test_haze_over_the_same_surface_is_not_cloud(method: MaskMethod, tmp_path: Path) -> None:
    """The same real surface (Sentinel-2 SR of 31UFS, with its own clouds) under AOD 0.05, 0.3 and 0.8, through
    6S to a nadir Sentinel-2B with blue, green, red and nir: the clouds found do not grow with the haze.
    Measured cloud share 17.3/16.6/19.3 % (musyq) and 10.7/9.7/9.2 % (rules), cloud IoU with the clearest day
    0.90 at AOD 0.3 and 0.66/0.59 at 0.8 (thin cloud edges vanish into heavy haze). With the clear line fixed
    at Fmask's, AOD 0.8 took 92 % and 98 % for cloud."""
    source = DATA / "gaofen-simulation"
    bands = [f"{name}={source / f'ref_check_icor_S2_{band}.tif'}"
             for name, band in zip(VNIR, ("B02", "B03", "B04", "B08"), strict=True)]
    clouds = {}
    for aod in ("0.05", "0.3", "0.8"):
        out = tmp_path / aod
        result = CliRunner().invoke(app, ["simulate", *bands, "--tile", "31UFS", "--aod", aod, "--source-sensor",
                                          "S2B_MSI", "--sensor", "S2B_MSI", "--datetime", "2021-04-11T10:40:00",
                                          "--out", str(out)])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(app, ["mask", str(next(out.glob("*_TOA.tif"))), "--sensor", "S2B_MSI",
                                          "--sun-zenith", "44", "--sun-azimuth", "164", "--mask-method",
                                          method.value, "--out", str(out / "mask.tif")])
        assert result.exit_code == 0, result.output
        with rasterio.open(out / "mask.tif") as mask:
            clouds[aod] = mask.read(1) == CLOUD
    clearest = clouds["0.05"]
    assert 0.05 < clearest.mean() < 0.25
    for aod, least_iou in (("0.3", 0.85), ("0.8", 0.55)):
        hazy = clouds[aod]
        assert abs(hazy.mean() - clearest.mean()) < 0.03, (aod, clearest.mean(), hazy.mean())
        iou = (clearest & hazy).sum() / (clearest | hazy).sum()
        assert iou > least_iou, (aod, iou)
