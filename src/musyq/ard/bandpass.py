"""Spectral bandpass adjustment: make one sensor's bands read like another's.

Two sensors' "red" bands see different slices of the spectrum, so the same surface gives them
different reflectances. Over natural surfaces the relation is close to linear, so each band of a
source sensor is mapped onto the matching band of a reference sensor by ``slope * rho + offset``.

* HLS publishes the coefficients from Sentinel-2 MSI to Landsat 8 OLI (fitted on Hyperion spectra);
  they are used where they exist.
* For every other pair musyq fits them itself: a spectral library generated offline (PROSAIL
  canopies over soils of varied brightness and wetness, and bare soils) is integrated over both
  sensors' spectral responses times the solar spectrum, and an ordinary least-squares line is
  fitted per band pair on 80 % of the spectra; the other 20 % measure how well it reproduces
  spectra it has not seen. ``musyq bandpass build`` regenerates the table shipped with musyq.
* Water gets lines of its own, fitted on deep waters from clear to turbid and humic (a
  semi-analytical water model): a land line's offset alone is as large as dark water's whole
  reflectance. Pixels the quality layer calls water take them.

Bands are paired by common name, a broad ``nir`` band also with a narrow ``nir08`` one; bands
without a partner (red edge, water vapour, cirrus) are left as they are, as HLS does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from musyq.core.errors import MusyqError, SensorError
from musyq.core.sensors import (
    ENDMEMBERS_FILE,
    Band,
    Sensor,
    available_sensors,
    get_sensor,
    reflectance_bands,
)

Array = NDArray[np.float64]
TABLE = "coefficients.json"
HOLDOUT_SHARE = 0.2
EQUIVALENT = ({"nir", "nir08"},)
EXCLUDED = ("wv", "cirrus", "pan")
SURFACES = ("land", "water")
ORIGIN = {"land": "musyq fit (PROSAIL canopies and soils)", "water": "musyq fit (deep waters)"}
# HLS v2.0 MSI -> OLI (hls.gsfc.nasa.gov/algorithms/bandpass-adjustment; bandpass_parameter.S2A/S2B/S2C.txt)
HLS = {
    "S2A_MSI": {"B01": (0.9959, -0.0002), "B02": (0.9778, -0.0040), "B03": (1.0053, -0.0009),
                "B04": (0.9765, 0.0009), "B8A": (0.9983, -0.0001), "B11": (0.9987, -0.0011), "B12": (1.0030, -0.0012)},
    "S2B_MSI": {"B01": (0.9959, -0.0002), "B02": (0.9778, -0.0040), "B03": (1.0075, -0.0008),
                "B04": (0.9761, 0.0010), "B8A": (0.9966, 0.0000), "B11": (1.0000, -0.0003), "B12": (0.9867, 0.0004)},
    "S2C_MSI": {"B01": (1.003, -0.0), "B02": (0.9851, -0.0027), "B03": (1.0038, -0.0009), "B04": (0.9718, 0.0011),
                "B8A": (0.9995, -0.0003), "B11": (0.9994, -0.0007), "B12": (0.991, 0.0004)},
}
HLS_REFERENCES = ("L8_OLI", "L9_OLI")
HLS_SOURCE = "HLS v2.0 published (Hyperion spectra)"


@dataclass(frozen=True)
class BandFit:
    """``target = slope * source + offset`` for one band pair, with how well it fits."""

    source_band: str
    target_band: str
    slope: float
    offset: float
    r2: float
    rmse: float  # on the fitted spectra
    rmse_holdout: float  # on the held-out spectra
    count: int
    origin: str
    surface: str = "land"  # the surfaces the line was fitted on: land, or water (pixels the mask calls water)


def pair_bands(source: Sensor, target: Sensor) -> list[tuple[Band, Band]]:
    """Each reflective band of ``source`` with its partner in ``target``: the same common name, else an
    equivalent one (the nearest in wavelength)."""
    pairs = []
    candidates = [b for b in target.reflective_bands if b.common_name not in EXCLUDED]
    for band in source.reflective_bands:
        if band.common_name in EXCLUDED:
            continue
        same = [b for b in candidates if b.common_name == band.common_name]
        if not same:
            group = next((g for g in EQUIVALENT if band.common_name in g), set())
            same = sorted((b for b in candidates if b.common_name in group),
                          key=lambda b: abs(b.center_wavelength - band.center_wavelength))
        if same:
            pairs.append((band, same[0]))
    return pairs


def water_spectra(rng: np.random.Generator, count: int) -> Array:
    """Reflectance (400-2500 nm, 1 nm) of optically deep waters from clear to turbid and humic.

    The semi-analytical model of Lee et al. (1999): r_rs = (0.089 + 0.125 u) u with
    u = b_b / (a + b_b) below the surface, R_rs = 0.52 r_rs / (1 - 1.7 r_rs) above it, and
    reflectance pi R_rs. Absorption is pure water (PROSPECT's liquid water coefficients, from the
    pure-water measurements) plus phytoplankton (PROSPECT's chlorophyll shape scaled to
    0.06 Chl^0.65 at 440 nm) plus CDOM (exponential, slope 0.015 /nm); backscattering is pure
    water (0.0038 (400/lambda)^4.32) plus particles (a power law in wavelength).
    """
    import prosail

    wavelength = np.arange(400.0, 2501.0)
    specific = prosail.spectral_lib.prospectd
    pure_water = specific.kw * 100.0  # 1/cm -> 1/m
    chlorophyll_shape = specific.kab / specific.kab[40]  # 1 at 440 nm
    chlorophyll = 10 ** rng.uniform(-1, 2, count)[:, None]  # mg/m3
    cdom_440 = 10 ** rng.uniform(-2, 0.3, count)[:, None]  # 1/m
    particles_555 = 10 ** rng.uniform(-3.3, -1, count)[:, None]  # 1/m
    particle_slope = rng.uniform(0, 2, count)[:, None]
    absorption = pure_water + 0.06 * chlorophyll**0.65 * chlorophyll_shape \
        + cdom_440 * np.exp(-0.015 * (wavelength - 440))
    backscatter = 0.0038 * (400 / wavelength) ** 4.32 + particles_555 * (555 / wavelength) ** particle_slope
    u = backscatter / (absorption + backscatter)
    below = (0.089 + 0.125 * u) * u
    return np.asarray(np.pi * 0.52 * below / (1 - 1.7 * below))


def generate_library(count: int = 3000, seed: int = 1) -> tuple[Array, dict[str, Array]]:
    """(wavelength nm, spectra per surface): ``land`` is ``count`` PROSAIL canopies over soils (three
    quarters) and bare soils, ``water`` a third as many deep waters.

    Needs the ``prosail`` package (``pip install 'musyq[bandpass]'``); the parameters are drawn
    uniformly over the ranges of natural canopies, soils and waters.
    """
    try:
        import prosail
    except ImportError:
        raise MusyqError("generating the spectral library needs prosail: pip install 'musyq[bandpass]'") from None
    rng = np.random.default_rng(seed)
    dry, wet = prosail.spectral_lib.soil.rsoil1, prosail.spectral_lib.soil.rsoil2
    canopies = (3 * count) // 4
    land = np.empty((count, dry.size))
    for k in range(canopies):
        land[k] = prosail.run_prosail(
            n=rng.uniform(1.0, 2.5), cab=rng.uniform(5, 80), car=rng.uniform(2, 20), cbrown=rng.uniform(0, 1),
            cw=rng.uniform(0.002, 0.04), cm=rng.uniform(0.002, 0.02), lai=rng.uniform(0.1, 7.0),
            lidfa=rng.uniform(30, 70), hspot=0.1, tts=rng.uniform(20, 60), tto=rng.uniform(0, 10),
            psi=rng.uniform(0, 180), ant=rng.uniform(0, 2), prospect_version="D", rsoil=rng.uniform(0.3, 1.5),
            psoil=rng.uniform(0, 1), factor="SDR")
    wetness = rng.uniform(0, 1, count - canopies)[:, None]
    brightness = rng.uniform(0.2, 1.8, count - canopies)[:, None]
    land[canopies:] = np.clip(brightness * (wetness * dry + (1 - wetness) * wet), 0, 1)
    return np.arange(400.0, 400.0 + dry.size), {"land": land, "water": water_spectra(rng, count // 3)}


# A closed green canopy and PROSAIL's dry soil: the two ends of the mixtures the endmember aerosol
# retrieval fits to vegetated pixels (Guanter et al. 2005 take one vegetation and one soil spectrum)
ENDMEMBER_CANOPY = {"n": 1.5, "cab": 40.0, "car": 8.0, "cbrown": 0.0, "cw": 0.012, "cm": 0.009, "lai": 4.0,
                    "lidfa": 57.0, "hspot": 0.1, "tts": 35.0, "tto": 0.0, "psi": 0.0, "ant": 0.0, "rsoil": 0.5,
                    "psoil": 0.5}


def generate_endmembers() -> tuple[Array, Array]:
    """(wavelength nm, [vegetation, soil] reflectance) from PROSAIL (``pip install 'musyq[bandpass]'``)."""
    try:
        import prosail
    except ImportError:
        raise MusyqError("generating the endmember spectra needs prosail: pip install 'musyq[bandpass]'") from None
    vegetation = prosail.run_prosail(prospect_version="D", factor="SDR", **ENDMEMBER_CANOPY)
    soil = prosail.spectral_lib.soil.rsoil1
    return np.arange(400.0, 400.0 + soil.size), np.stack([vegetation, soil])


def save_endmembers(path: Path | None = None) -> Path:
    """Write the endmember spectra where ``musyq.core.sensors.endmember_spectra`` reads them (or to ``path``)."""
    target = path or Path(str(resources.files("musyq").joinpath("data", "endmembers", ENDMEMBERS_FILE)))
    wavelength, spectra = generate_endmembers()
    partial = target.with_name(f".{target.name}.partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(partial, np.column_stack([wavelength, spectra.T]), delimiter=",", fmt=["%.0f", "%.6f", "%.6f"],
               header="wavelength_nm,vegetation,soil", comments="")
    partial.replace(target)
    return target


def simulate(sensor: Sensor, bands: list[Band], wavelength_nm: Array, spectra: Array) -> Array:
    """Band reflectances a sensor would record of the spectra."""
    return reflectance_bands(sensor.id, wavelength_nm, spectra, tuple(b.id for b in bands))


def fit_pair(source: Sensor, target: Sensor, wavelength_nm: Array, spectra: Array, seed: int = 2,
             published: dict[str, tuple[float, float]] | None = None, surface: str = "land") -> list[BandFit]:
    """Least-squares lines from every paired band of ``source`` to ``target``, judged on held-out spectra.

    For bands in ``published`` the published line is kept instead, and judged on the same spectra.
    """
    pairs = pair_bands(source, target)
    if not pairs:
        return []
    from_bands = simulate(source, [p[0] for p in pairs], wavelength_nm, spectra)
    to_bands = simulate(target, [p[1] for p in pairs], wavelength_nm, spectra)
    held_out = np.random.default_rng(seed).random(len(spectra)) < HOLDOUT_SHARE
    fits = []
    for k, (band, partner) in enumerate(pairs):
        x, y = from_bands[:, k], to_bands[:, k]
        if published is not None and band.id in published:
            (slope, offset), origin = published[band.id], HLS_SOURCE
        else:
            slope, offset = np.polyfit(x[~held_out], y[~held_out], 1)
            origin = ORIGIN[surface]
        fitted = slope * x + offset
        residual = y[~held_out] - fitted[~held_out]
        r2 = 1 - np.mean(residual**2) / y[~held_out].var()
        fits.append(BandFit(band.id, partner.id, round(float(slope), 5), round(float(offset), 5), round(float(r2), 5),
                            round(float(np.sqrt(np.mean(residual**2))), 6),
                            round(float(np.sqrt(np.mean((y[held_out] - fitted[held_out]) ** 2))), 6),
                            int((~held_out).sum()), origin, surface))
    return fits


def build_table(count: int = 3000, seed: int = 1) -> dict[str, object]:
    """Coefficients between every ordered pair of sensors, for land (HLS's where published, else fitted
    here) and for water (fitted here: a line through land spectra misplaces dark water)."""
    wavelength_nm, library = generate_library(count, seed)
    table: dict[str, dict[str, list[dict[str, object]]]] = {}
    for source_id in available_sensors():
        for target_id in available_sensors():
            if source_id == target_id:
                continue
            published = HLS.get(source_id) if target_id in HLS_REFERENCES else None
            fits = [fit for surface in SURFACES for fit in fit_pair(
                get_sensor(source_id), get_sensor(target_id), wavelength_nm, library[surface],
                published=published if surface == "land" else None, surface=surface)]
            table.setdefault(source_id, {})[target_id] = [asdict(f) for f in fits]
    return {"library": {"spectra": count, "seed": seed, "holdout_share": HOLDOUT_SHARE,
                        "composition": {"land": "75% PROSAIL (PROSPECT-D + 4SAIL) canopies over soils, 25% bare soils",
                                        "water": f"{count // 3} optically deep waters (Lee et al. 1999)"}},
            "pairs": table}


def save_table(table: dict[str, object], path: Path) -> Path:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(table, indent=1))
    partial.replace(path)
    return path


def table_path() -> Path:
    return Path(str(resources.files("musyq").joinpath("data", "bandpass", TABLE)))


@cache
def _shipped() -> dict[str, dict[str, list[dict[str, object]]]]:
    return dict(json.loads(table_path().read_text())["pairs"])


def coefficients(source_id: str, target_id: str) -> list[BandFit]:
    """The shipped band fits from ``source_id`` to ``target_id`` (empty when they are the same sensor)."""
    if source_id == target_id:
        return []
    table = _shipped()
    if source_id not in table or target_id not in table[source_id]:
        raise SensorError(f"no bandpass coefficients from {source_id} to {target_id}; sensors: "
                          f"{', '.join(sorted(table))}")
    return [BandFit(**entry) for entry in table[source_id][target_id]]  # type: ignore[arg-type]


def adjust(reflectance: NDArray[np.float32], bands: tuple[Band, ...], fits: list[BandFit],
           water: NDArray[np.bool_] | None = None, uncertainty: NDArray[np.float32] | None = None) -> list[str]:
    """Apply the fits in place to the bands they cover; returns the ids of the adjusted bands.

    Pixels in ``water`` take the water lines, all others the land lines. ``uncertainty`` (the bands' sigma)
    is scaled by the slope and takes the line's held-out RMSE in quadrature, in place.
    """
    lines = {(f.surface, f.source_band): f for f in fits}
    water_pixels = np.nonzero(water if water is not None else np.zeros(reflectance.shape[1:], dtype=bool))
    adjusted = []
    for k, band in enumerate(bands):
        land = lines.get(("land", band.id))
        if land is None:
            continue
        values = reflectance[k]
        wet = lines.get(("water", band.id))
        original_water = values[water_pixels]
        values *= np.float32(land.slope)
        values += np.float32(land.offset)
        if wet is not None:
            values[water_pixels] = original_water * np.float32(wet.slope) + np.float32(wet.offset)
        if uncertainty is not None:
            sigma = uncertainty[k]
            original_sigma = sigma[water_pixels]
            sigma[...] = np.hypot(sigma * np.float32(land.slope), np.float32(land.rmse_holdout))
            if wet is not None:
                sigma[water_pixels] = np.hypot(original_sigma * np.float32(wet.slope), np.float32(wet.rmse_holdout))
        adjusted.append(band.id)
    return adjusted


# Band synthesis: a band the source sensor lacks (red edge on Landsat, SWIR on Gaofen), as the least-squares mix
# of all the source's bands over the same land library. The held-out RMSE travels with it as its uncertainty.
SYNTHESIS = "synthesis.json"
SYNTHESIS_TARGETS = ("S2A_MSI",)  # the biophysical networks' bands
# what the surface reflectance a simulation starts from usually holds, and the sensors with more bands than that
# a simulation makes (GF-6 WFV's red edges, purple and yellow)
VNIR = ("blue", "green", "red", "nir")
VNIR_SYNTHESIS_TARGETS = ("GF6_WFV",)


@dataclass(frozen=True)
class BandSynthesis:
    target_band: str
    target_name: str  # common name of the synthesized band
    weights: dict[str, float]  # source common name -> weight
    offset: float
    rmse_holdout: float
    count: int


def fit_synthesis(source: Sensor, target: Sensor, wavelength_nm: Array, spectra: Array,
                  seed: int = 2, given: tuple[str, ...] | None = None) -> list[BandSynthesis]:
    """A linear mix of every reflective band of ``source`` (or of those named in ``given``) for each band of
    ``target`` it has no partner for."""
    broad_nir = any(b.common_name == "nir" for b in source.reflective_bands)

    def is_given(band: Band) -> bool:  # a narrow nir08 stands for nir on a sensor with no broad one (OLI, MODIS)
        return given is None or band.common_name in given or (band.common_name == "nir08" and not broad_nir
                                                               and "nir" in given)

    inputs = [b for b in source.reflective_bands if b.common_name not in EXCLUDED and is_given(b)]
    paired = {partner.id for own, partner in pair_bands(source, target) if own in inputs}
    missing = [b for b in target.reflective_bands if b.common_name not in EXCLUDED and b.id not in paired]
    if not inputs or not missing:
        return []
    x = simulate(source, inputs, wavelength_nm, spectra)
    y = simulate(target, missing, wavelength_nm, spectra)
    held_out = np.random.default_rng(seed).random(len(spectra)) < HOLDOUT_SHARE
    design = np.column_stack([x, np.ones(len(x))])
    found = []
    for k, band in enumerate(missing):
        solution, *_ = np.linalg.lstsq(design[~held_out], y[~held_out, k], rcond=None)
        residual = y[held_out, k] - design[held_out] @ solution
        found.append(BandSynthesis(band.id, band.common_name,
                                   {b.common_name: round(float(w), 6) for b, w in zip(inputs, solution[:-1], strict=True)},
                                   round(float(solution[-1]), 6), round(float(np.sqrt(np.mean(residual**2))), 6),
                                   int((~held_out).sum())))
    return found


def build_synthesis(count: int = 3000, seed: int = 1) -> dict[str, object]:
    """Synthesis mixes from every sensor to the ``SYNTHESIS_TARGETS``, and from every sensor's blue, green, red
    and nir alone to the ``VNIR_SYNTHESIS_TARGETS``."""
    wavelength_nm, library = generate_library(count, seed)
    tables: dict[str, dict[str, dict[str, list[dict[str, object]]]]] = {"pairs": {}, "from_vnir": {}}
    for key, targets, given in (("pairs", SYNTHESIS_TARGETS, None), ("from_vnir", VNIR_SYNTHESIS_TARGETS, VNIR)):
        for source_id in available_sensors():
            for target_id in targets:
                if get_sensor(source_id).family == get_sensor(target_id).family:
                    continue
                mixes = fit_synthesis(get_sensor(source_id), get_sensor(target_id), wavelength_nm, library["land"],
                                      given=given)
                if mixes:
                    tables[key].setdefault(source_id, {})[target_id] = [asdict(m) for m in mixes]
    return {"library": {"spectra": count, "seed": seed, "holdout_share": HOLDOUT_SHARE, "surface": "land"},
            **tables}


def synthesis_path() -> Path:
    return Path(str(resources.files("musyq").joinpath("data", "bandpass", SYNTHESIS)))


@cache
def synthesis(source_id: str, target_id: str, from_vnir: bool = False) -> list[BandSynthesis]:
    """The shipped synthesis mixes from ``source_id`` (all its bands, or only the ``VNIR`` ones) to
    ``target_id`` (empty where none were fitted)."""
    path = synthesis_path()
    pairs = json.loads(path.read_text())["from_vnir" if from_vnir else "pairs"] if path.exists() else {}
    return [BandSynthesis(**entry) for entry in pairs.get(source_id, {}).get(target_id, [])]
