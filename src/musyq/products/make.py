"""The products driver: for each source item, read the bands the requested products need once, make each
product with its sigma and flags, and write COG + STAC per product and/or one CF NetCDF per tile and period."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pystac
import spyndex
from numpy.typing import NDArray

from musyq import __version__
from musyq.ard.bandpass import SYNTHESIS_TARGETS, synthesis
from musyq.ard.brdf import load_brdf_parameters
from musyq.core.sensors import resolve_sensor_id
from musyq.io.catalog import item_sensor
from musyq.core.errors import MusyqError
from musyq.io.netcdf import NetcdfVariable, netcdf_variables, write_netcdf
from musyq.io.output import Layer, write_cog
from musyq.io.stac import AssetSpec, build_product_item, save_item, update_collection
from musyq.products.albedo import broadband, coefficients_for, spectral_albedo
from musyq.products.biophysical import INPUT_BANDS, INPUT_OUT_OF_DOMAIN, OUTPUT_ABOVE, OUTPUT_BELOW, \
    biophysical
from musyq.products.expression import Expression
from musyq.products.fvc import MIN_PIXELS, EndMembers, end_members, fractional_cover
from musyq.products.indices import compute_index, index_bands
from musyq.products.names import ALBEDO_PRODUCTS, VARIABLES, resolve_products
from musyq.products.source import Source, find_sources, named_reflectance, read_source

PRODUCT_COLLECTION = "musyq-products"
PRODUCT_DESCRIPTION = "musyq products with per-pixel uncertainty"
HARMONIZED_NAME = {"nir08": "nir"}  # sensor common names -> the harmonized names of the reflectance
FORMATS = ("cog", "netcdf")
QUALITY_FILL = 255
BIOPHYSICAL_FLAGS = {INPUT_OUT_OF_DOMAIN: "input_out_of_definition_domain", OUTPUT_BELOW: "output_below_valid_range",
                     OUTPUT_ABOVE: "output_above_valid_range"}
# CF standard names where CF has one
STANDARD_NAMES = {"LAI": "leaf_area_index", "FCOVER": "vegetation_area_fraction", "FVC": "vegetation_area_fraction",
                  "ALBEDO": "surface_albedo", "BSA": "surface_albedo", "WSA": "surface_albedo"}
DESCRIPTIONS = {
    "FVC": "fractional vegetation cover (pixel dichotomy on NDVI)", "LAI": "leaf area index (SNAP S2 network v2.1)",
    "FAPAR": "fraction of absorbed photosynthetically active radiation (SNAP S2 network v2.1)",
    "FCOVER": "fraction of vegetation cover (SNAP S2 network v2.1)",
    "ALBEDO": "shortwave broadband reflectance of the NBAR geometry (narrow-to-broadband mix)",
    "BSA": "shortwave black-sky albedo at the sun zenith of the reflectance",
    "WSA": "shortwave white-sky albedo",
}


@dataclass(frozen=True)
class ProductOptions:
    formats: tuple[str, ...] = ("cog",)
    fvc_members: EndMembers | None = None  # given end-members; None chooses them per tile from the histogram
    brdf: Path | None = None  # per-pixel BRDF parameters for BSA and WSA
    constants: dict[str, float] = field(default_factory=dict)  # index constants (L, g, C1, ...)
    overwrite: bool = False


@dataclass(frozen=True, eq=False)
class Made:
    name: str
    value: NDArray[np.float32]
    sigma: NDArray[np.float32] | None
    quality: NDArray[np.uint8] | None
    flags: dict[int, str]
    description: str
    properties: dict[str, object]


def needed_bands(name: str) -> list[str]:
    if name in VARIABLES:
        return ["coastal", "blue", *INPUT_BANDS]  # the blue bands only where the missing ones are synthesized
    if name == "FVC":
        return ["red", "nir"]
    if name in ALBEDO_PRODUCTS:
        return ["coastal", "blue", "green", "red", "nir", "swir16", "swir22"]  # whichever the mix uses
    return index_bands(name)[0]


def _sigma_of(source: Source, bands: Sequence[str]) -> dict[str, NDArray[np.float32]] | None:
    if source.sigma is None or not all(b in source.sigma for b in bands):
        return None
    return {b: source.sigma[b] for b in bands}


def network_inputs(source: Source) -> tuple[dict[str, NDArray[np.float32]], dict[str, NDArray[np.float32]] | None,
                                             dict[str, str]]:
    """The networks' Sentinel-2 bands: the source's own, and those it lacks (red edge on Landsat, SWIR on
    Gaofen) synthesized by the shipped mixes of its bands, the mix's held-out RMSE joining the sigma."""
    bands, sigma = dict(source.bands), None if source.sigma is None else dict(source.sigma)
    missing = [b for b in INPUT_BANDS if b not in bands]
    synthesized: dict[str, str] = {}
    if not missing:
        return bands, sigma, synthesized
    # the sensor the bands were adjusted to first, then the item's own (its mixes take the adjusted bands)
    for sensor in dict.fromkeys((source.reference_sensor, item_sensor(source.item))):
        try:
            mixes = synthesis(resolve_sensor_id(sensor), SYNTHESIS_TARGETS[0])
        except MusyqError:
            continue
        for mix in mixes:
            target = "nir" if mix.target_name == "nir08" else mix.target_name
            inputs = {HARMONIZED_NAME.get(n, n): w for n, w in mix.weights.items()}
            if target not in missing or not all(n in bands for n in inputs):
                continue
            bands[target] = np.asarray(np.float32(mix.offset) + sum(np.float32(w) * bands[n] for n, w in inputs.items()),
                                       dtype=np.float32)
            if sigma is not None and all(n in sigma for n in inputs):
                variance = sum((np.float32(w) * sigma[n]) ** 2 for n, w in inputs.items())
                sigma[target] = np.sqrt(variance + np.float32(mix.rmse_holdout) ** 2).astype(np.float32)
            synthesized[target] = f"from {sensor} bands (held-out RMSE {mix.rmse_holdout:.4f})"
            missing.remove(target)
    if missing:
        raise MusyqError(f"the SNAP network needs {', '.join(missing)}; {source.item.id} lacks them and no "
                         "synthesis from its bands covers them")
    if sigma is not None and not all(b in sigma for b in INPUT_BANDS):
        sigma = None
    return bands, sigma, synthesized


def make_product(name: str, source: Source, options: ProductOptions) -> Made:
    """One product of one source, NaN where it is not made."""
    if name in VARIABLES:
        bands, sigma, synthesized = network_inputs(source)
        land = {b: np.where(source.land, bands[b], np.nan) for b in INPUT_BANDS}
        result = biophysical(name, land, source.view_zenith, source.sun_zenith, source.relative_azimuth,
                             None if sigma is None else {b: sigma[b] for b in INPUT_BANDS})
        quality = np.where(source.land, result.quality, QUALITY_FILL).astype(np.uint8)
        flagged = {v: round(100 * float(np.mean(quality[source.land] & k > 0)), 2) if source.land.any() else 0.0
                   for k, v in BIOPHYSICAL_FLAGS.items()}
        return Made(name, result.value.astype(np.float32), None if result.sigma is None else
                    result.sigma.astype(np.float32), quality, BIOPHYSICAL_FLAGS, DESCRIPTIONS[name],
                    {"musyq:network": "SNAP S2 Toolbox biophysical v2.1", "musyq:flag_percent": flagged,
                     "musyq:synthesized_bands": synthesized})
    if name == "FVC":
        ndvi = compute_index("NDVI", source.bands, _sigma_of(source, ("red", "nir")))
        if options.fvc_members is None and int(source.land.sum()) < MIN_PIXELS:
            # a tile the scene barely touches: nothing to learn end-members from, so no cover is made
            warnings.warn(f"{source.item.id}: {int(source.land.sum())} clear land pixels are too few for FVC "
                          "end-members (give --fvc-soil and --fvc-vegetation); FVC left empty", stacklevel=2)
            empty = np.full(source.geobox.shape.yx, np.nan, dtype=np.float32)
            return Made(name, empty, empty.copy(), None, {}, DESCRIPTIONS[name],
                        {"musyq:fvc_end_members": "none: too few clear land pixels"})
        members = options.fvc_members or end_members(ndvi.value, source.land)
        land_ndvi = np.where(source.land, ndvi.value, np.nan)
        cover = fractional_cover(land_ndvi, members, ndvi.sigma)
        return Made(name, cover.fvc.astype(np.float32), None if cover.sigma is None else cover.sigma.astype(np.float32),
                    None, {}, DESCRIPTIONS[name],
                    {"musyq:fvc_ndvi_soil": round(members.soil, 4), "musyq:fvc_ndvi_vegetation": round(members.vegetation, 4),
                     "musyq:fvc_end_members": "given" if options.fvc_members else "tile histogram 5/95 %"})
    if name in ALBEDO_PRODUCTS:
        return _albedo(name, source, options)
    index = compute_index(name, source.bands, _sigma_of(source, index_bands(name)[0]), options.constants)
    entry = spyndex.indices[name]
    return Made(name, index.value.astype(np.float32), None if index.sigma is None else index.sigma.astype(np.float32),
                None, {}, str(entry.long_name), {"musyq:formula": str(entry.formula), "musyq:index_reference":
                                                 str(entry.reference)})


def _albedo(name: str, source: Source, options: ProductOptions) -> Made:
    mix = coefficients_for(source.reference_sensor)
    properties: dict[str, object] = {"musyq:albedo_coefficients": mix.source}
    if name == "ALBEDO":
        result = broadband(mix, source.bands, _sigma_of(source, list(mix.weights)))
        return Made(name, result.value, result.sigma, None, {}, DESCRIPTIONS[name], properties)
    if options.brdf is None:
        raise MusyqError(f"{name} needs per-pixel BRDF parameters (--brdf FILE with bands described red_iso, "
                         "red_vol, red_geo, ...)")
    parameters = load_brdf_parameters(options.brdf, source.geobox).by_band
    spectral = {}
    for band in mix.weights:
        triplet = parameters.get(band) or (parameters.get("nir08") if band == "nir" else None)
        if triplet is None:
            raise MusyqError(f"{options.brdf}: no {band}_iso/_vol/_geo parameters, which the {mix.name} mix needs")
        spectral[band] = np.where(source.usable, spectral_albedo(name, *triplet, source.sun_zenith), np.nan)
    properties["musyq:brdf_parameters"] = options.brdf.name
    return Made(name, broadband(mix, spectral).value, None, None, {}, DESCRIPTIONS[name], properties)


Progress = Callable[[str, int, int], None]


def _cog_item(out_dir: Path, source: Source, made: Made) -> Path:
    item_id = f"{source.item.id}.{made.name}"
    home = out_dir / source.tile / item_id
    specs = []
    layers: list[tuple[str, Layer, tuple[str, ...]]] = [(made.name, Layer(made.name, made.value, float("nan"), (made.name,)), ("data",))]
    if made.sigma is not None:
        layers.append((f"{made.name}_SIGMA", Layer(f"{made.name}_SIGMA", made.sigma, float("nan"), ("sigma",)),
                       ("data", "uncertainty")))
    if made.quality is not None:
        layers.append((f"{made.name}_QUALITY", Layer(f"{made.name}_QUALITY", made.quality, QUALITY_FILL,
                                                      ("quality",), resampling="nearest"), ("metadata", "quality")))
    for key, layer, roles in layers:
        path = write_cog(home / f"{source.item.id}.{key}.tif", layer, source.geobox)
        title = made.description if key == made.name else (
            f"One standard deviation of {made.name}" if key.endswith("SIGMA") else
            "Quality bits: " + ", ".join(f"{k} {v}" for k, v in made.flags.items()))
        specs.append(AssetSpec(key, path, title, roles, None, layer.descriptions, layer.nodata, 1.0,
                               layer.data.dtype.name))
    item = build_product_item(item_id, source.item, source.geobox, specs, {
        "musyq:product": made.name, "musyq:source_item": source.item.id, "musyq:source_kind": source.kind,
        "musyq:uncertainty": "propagated from the reflectance sigma" if made.sigma is not None else "none",
        **made.properties})
    return save_item(item, home / f"{item_id}.json")


def _netcdf(out_dir: Path, source: Source, made: list[Made]) -> Path:
    variables = []
    for product in made:
        variables.append(NetcdfVariable(product.name, product.value, product.description,
                                        STANDARD_NAMES.get(product.name), product.properties))
        if product.sigma is not None:
            variables.append(NetcdfVariable(f"{product.name}_uncertainty", product.sigma,
                                            f"one standard deviation of {product.name}",
                                            f"{STANDARD_NAMES[product.name]} standard_error"
                                            if product.name in STANDARD_NAMES else None, {}))
        if product.quality is not None:
            variables.append(NetcdfVariable(f"{product.name}_quality", product.quality,
                                            f"quality bits of {product.name}", None, {}, product.flags))
    path = out_dir / source.tile / f"{source.item.id}.nc"
    return write_netcdf(path, source.geobox, source.start, source.end, variables, {
        "title": f"musyq products of {source.item.id}", "source": f"musyq {__version__} from {source.item.id}",
        "mgrs_tile": source.tile})


def make_products(names: Sequence[str], inputs: Sequence[Path], out_dir: Path, options: ProductOptions,
                  tile: str | None = None, start: str | None = None, end: str | None = None,
                  progress: Progress | None = None, update_catalog: bool = True) -> list[Path]:
    """Every product in ``names`` for every source item in ``inputs``; finished outputs are kept unless
    ``options.overwrite``. Returns the written (or kept) STAC item and NetCDF files. Without
    ``update_catalog`` the output folder's collection is left to the caller (tasks running side by side)."""
    products = resolve_products(names)
    unknown = [f for f in options.formats if f not in FORMATS]
    if unknown or not options.formats:
        raise MusyqError(f"unknown output format {unknown[0] if unknown else ''!r}; choose from {', '.join(FORMATS)}")
    items = list(find_sources(inputs, tile, start, end))
    if not items:
        raise MusyqError(f"no ARD, composite or ARD+ item in {', '.join(map(str, inputs))}"
                         + (f" for tile {tile}" if tile else "") + (" in the period" if start or end else ""))
    wanted = sorted({b for name in products for b in needed_bands(name)})
    written: list[Path] = []
    cog_items: list[Path] = []
    for done, item in enumerate(items, 1):
        tile_id = str(item.properties.get("mgrs:tile", "tile"))
        pending = [n for n in products if "cog" in options.formats and (
            options.overwrite or not (out_dir / tile_id / f"{item.id}.{n}" / f"{item.id}.{n}.json").exists())]
        netcdf_path = out_dir / tile_id / f"{item.id}.nc"
        netcdf_due = "netcdf" in options.formats and (options.overwrite or not set(products) <= netcdf_variables(netcdf_path))
        if pending or netcdf_due:
            source = read_source(item, wanted)
            made = {n: make_product(n, source, options) for n in (products if netcdf_due else pending)}
            for name in pending:
                cog_items.append(_cog_item(out_dir, source, made[name]))
            if netcdf_due:
                written.append(_netcdf(out_dir, source, list(made.values())))
        for name in products:
            if "cog" in options.formats and name not in pending:
                cog_items.append(out_dir / tile_id / f"{item.id}.{name}" / f"{item.id}.{name}.json")
        if "netcdf" in options.formats and not netcdf_due:
            written.append(netcdf_path)
        if progress:
            progress(item.id, done, len(items))
    if cog_items and update_catalog:
        update_collection(out_dir, cog_items, PRODUCT_COLLECTION, PRODUCT_DESCRIPTION)
    return cog_items + written


EXPRESSION_COLLECTION = "musyq-expressions"
EXPRESSION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")


def expression_product(expression: Expression, name: str, item_file: Path, out_dir: Path) -> Path:
    """A user's band math on an ARD, composite or ARD+ item, saved as a product (COG + STAC) in ``out_dir``'s
    collection; NaN where the item's pixels are not usable (cloud, shadow, snow, fill)."""
    if not EXPRESSION_NAME.fullmatch(name):
        raise MusyqError(f"product name {name!r} must be a letter then up to 31 letters, digits or underscores")
    item = pystac.Item.from_file(str(item_file))
    bands = named_reflectance(item, expression.bands)
    source = read_source(item, [])  # the grid and the usable pixels
    value = expression.evaluate({b: v.astype(np.float64) for b, v in bands.items()})
    value[~source.usable] = np.nan
    made = Made(name, value.astype(np.float32), None, None, {}, f"Band math: {expression.text}",
                {"musyq:expression": expression.text})
    saved = _cog_item(out_dir, source, made)
    update_collection(out_dir, [saved], EXPRESSION_COLLECTION, "Band-math products saved from the musyq portal")
    return saved
