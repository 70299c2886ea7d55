"""MODIS land products as coarse reference series: MOD13/MYD13 vegetation indices, MCD43A4 NBAR and MOD09/MYD09
surface reflectance, from the HDF4-EOS files LP DAAC distributes (read with pyhdf, since rasterio's wheels carry no
HDF4 driver) or from per-band GeoTIFFs exported from them (AppEEARS, GEE) that keep the granule name.

Every layer comes back as physical values (NaN where fill or where the product's own quality marks cloud, snow
or a failed inversion) under musyq's harmonized band names, on the product's sinusoidal grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox

from musyq.core.errors import MusyqError

# The MODIS land grid's sphere (Snyder's sinusoidal with the authalic radius the products are defined on).
SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
HDF4_SIGNATURE = b"\x0e\x03\x13\x01"
GRANULE = re.compile(r"(?P<product>M[OYC]D\d{2}[A-Z][A-Z0-9])\.A(?P<year>\d{4})(?P<doy>\d{3})\.(?P<tile>h\d{2}v\d{2})")
# MODIS bands 1-7 under the cube's harmonized names (band 5, 1.24 um, has no counterpart in OLI or MSI)
MODIS_BANDS = {1: "red", 2: "nir", 3: "blue", 4: "green", 6: "swir16", 7: "swir22"}
# Days from a composite's first day to the middle of its window
COMPOSITE_MIDDLE = {"13A1": 8, "13A2": 8, "13Q1": 8, "13A3": 15, "09A1": 4, "09Q1": 4}


@dataclass(frozen=True)
class CoarseScene:
    """One MODIS granule's layers (float32, NaN where unusable) on its grid, dated to the middle of its window."""

    product: str
    day: date
    geobox: GeoBox
    layers: dict[str, NDArray[np.float32]]


def _granule(path: Path) -> tuple[str, date]:
    match = GRANULE.search(path.name)
    if not match:
        raise MusyqError(f"{path}: not a MODIS granule name (PRODUCT.AYYYYDDD.hHHvVV...)")
    product = match["product"]
    first = date(int(match["year"]), 1, 1) + timedelta(days=int(match["doy"]) - 1)
    return product, first + timedelta(days=COMPOSITE_MIDDLE.get(product[3:], 0))


def _physical(raw: NDArray[np.generic], attrs: dict[str, object]) -> NDArray[np.float32]:
    """Stored integers to physical values. MODIS land products write ``scale_factor`` both ways: 10000 for
    "divide by" (MOD09, MOD13) and 0.0001 for "multiply by" (MCD43), so its size says which."""
    data = raw.astype(np.float32)
    fill = attrs.get("_FillValue")
    bad = np.zeros(raw.shape, dtype=bool) if fill is None else raw == fill
    valid = attrs.get("valid_range")
    if isinstance(valid, list | tuple) and len(valid) == 2:
        bad |= (raw < valid[0]) | (raw > valid[1])
    scale = float(attrs.get("scale_factor", 1.0))  # type: ignore[arg-type]
    offset = float(attrs.get("add_offset", 0.0))  # type: ignore[arg-type]
    data = (data - offset) / scale if scale > 1 else (data - offset) * scale
    data[bad] = np.nan
    return data


def _sinusoidal_geobox(metadata: str, grid: str, shape: tuple[int, int]) -> GeoBox:
    """The grid's box from HDF-EOS StructMetadata (corners in metres on the MODIS sphere)."""
    for block in re.split(r"GROUP=GRID_\d+", metadata)[1:]:
        if f'GridName="{grid}"' not in block:
            continue
        ul = re.search(r"UpperLeftPointMtrs=\(([-\d.]+),([-\d.]+)\)", block)
        lr = re.search(r"LowerRightMtrs=\(([-\d.]+),([-\d.]+)\)", block)
        if ul and lr:
            x0, y0, x1, y1 = (float(v) for v in (*ul.groups(), *lr.groups()))
            height, width = shape
            transform = Affine((x1 - x0) / width, 0, x0, 0, (y1 - y0) / height, y0)
            return GeoBox(shape, transform, SINUSOIDAL)
    raise MusyqError(f"no corners for grid {grid} in the file's StructMetadata")


def _grid_of(metadata: str, field: str) -> str:
    for block in re.split(r"GROUP=GRID_\d+", metadata)[1:]:
        if f'DataFieldName="{field}"' in block:
            name = re.search(r'GridName="([^"]+)"', block)
            if name:
                return name.group(1)
    raise MusyqError(f"field {field} is in no grid of the file's StructMetadata")


def _mod13_layers(fields: dict[str, tuple[NDArray[np.generic], dict[str, object]]]) -> dict[str, NDArray[np.float32]]:
    names = {"NDVI": "ndvi", "EVI": "evi", "red reflectance": "red", "NIR reflectance": "nir",
             "blue reflectance": "blue", "MIR reflectance": "swir22"}
    out = {}
    reliability = next((raw for name, (raw, _) in fields.items() if name.endswith("pixel reliability")), None)
    for name, (raw, attrs) in fields.items():
        for suffix, harmonized in names.items():
            if name.endswith(f"16 days {suffix}") or name.endswith(f"monthly {suffix}"):
                values = _physical(raw, attrs)
                if reliability is not None:  # 0 good, 1 marginal; 2 snow or ice, 3 cloud, -1 fill
                    values[~np.isin(reliability, (0, 1))] = np.nan
                out[harmonized] = values
    return out


def _mcd43_layers(fields: dict[str, tuple[NDArray[np.generic], dict[str, object]]]) -> dict[str, NDArray[np.float32]]:
    out = {}
    for band, harmonized in MODIS_BANDS.items():
        entry = fields.get(f"Nadir_Reflectance_Band{band}")
        if entry is None:
            continue
        values = _physical(*entry)
        quality = fields.get(f"BRDF_Albedo_Band_Mandatory_Quality_Band{band}")
        if quality is not None:  # 0 full inversion, 1 magnitude inversion; 255 none
            values[~np.isin(quality[0], (0, 1))] = np.nan
        out[harmonized] = values
    return out


def _mod09_layers(fields: dict[str, tuple[NDArray[np.generic], dict[str, object]]]) -> dict[str, NDArray[np.float32]]:
    out = {}
    state_entry = fields.get("state_1km_1") or fields.get("sur_refl_state_500m")
    for band, harmonized in MODIS_BANDS.items():
        entry = fields.get(f"sur_refl_b{band:02d}_1") or fields.get(f"sur_refl_b{band:02d}")
        if entry is None:
            continue
        values = _physical(*entry)
        if state_entry is not None:
            state = state_entry[0].astype(np.uint16)
            repeat = values.shape[0] // state.shape[0]
            if repeat > 1:  # the 1 km state over the 500 m bands
                state = np.repeat(np.repeat(state, repeat, axis=0), repeat, axis=1)
            # cloud state (bits 0-1) clear, no shadow (bit 2), no cirrus (bits 8-9), no internal cloud (bit 10)
            cloudy = ((state & 0b11) != 0) | ((state >> 2) & 1 == 1) | ((state >> 8) & 0b11 != 0) | (
                (state >> 10) & 1 == 1)
            values[cloudy] = np.nan
        out[harmonized] = values
    return out


# the HDF fields each product's layers come from (the angles, counts and pointers are never read)
_FIELDS = {"13": ("250m 16 days", "500m 16 days", "1 km 16 days", "1 km monthly", "500m monthly"),
           "43": ("Nadir_Reflectance_Band", "BRDF_Albedo_Band_Mandatory_Quality_Band"),
           "09": ("sur_refl_b", "state_1km_1", "sur_refl_state_500m")}


def _read_hdf4(path: Path, product: str) -> tuple[GeoBox, dict[str, NDArray[np.float32]]]:
    from pyhdf.SD import SD, SDC  # imported here: only HDF4 input needs it
    from pyhdf.error import HDF4Error

    if product[3:5] not in _FIELDS:
        _layers(product, {})  # names the product musyq does not read

    try:
        handle = SD(str(path), SDC.READ)
    except HDF4Error as error:
        raise MusyqError(f"{path}: not a readable HDF4 file ({error})") from None
    try:
        metadata = str(handle.attributes().get("StructMetadata.0", ""))
        fields = {}
        for name, info in handle.datasets().items():
            if len(info[1]) == 2 and name.startswith(_FIELDS[product[3:5]]):
                dataset = handle.select(name)
                fields[name] = (np.asarray(dataset[:]), dict(dataset.attributes()))
    finally:
        handle.end()
    layers = _layers(product, fields)
    if not layers:
        raise MusyqError(f"{path}: no MODIS layer musyq can use as a reference")
    first = next(iter(layers))
    source = next(name for name, (raw, _) in fields.items() if raw.shape == layers[first].shape)
    geobox = _sinusoidal_geobox(metadata, _grid_of(metadata, source), layers[first].shape)
    return geobox, {k: v for k, v in layers.items() if v.shape == layers[first].shape}


def _layers(product: str, fields: dict[str, tuple[NDArray[np.generic], dict[str, object]]]
            ) -> dict[str, NDArray[np.float32]]:
    kind = product[3:5]
    if kind == "13":
        return _mod13_layers(fields)
    if kind == "43":
        return _mcd43_layers(fields)
    if kind == "09":
        return _mod09_layers(fields)
    raise MusyqError(f"MODIS product {product} is not a reference musyq reads (MOD13, MCD43A4, MOD09)")


def _read_geotiffs(paths: list[Path], product: str) -> tuple[GeoBox, dict[str, NDArray[np.float32]]]:
    """Per-layer GeoTIFFs of one granule, named after their HDF field (``..._B01.TIF``, ``..._NDVI.tif``)."""
    fields: dict[str, tuple[NDArray[np.generic], dict[str, object]]] = {}
    geobox = None
    for path in paths:
        suffix = path.stem.rsplit("_", 1)[-1]
        with rasterio.open(path) as src:
            raw = src.read(1)
            attrs: dict[str, object] = {"_FillValue": src.nodata} if src.nodata is not None else {}
            scale = src.scales[0] if src.scales and src.scales[0] != 1.0 else None
            geobox = geobox or GeoBox(raw.shape, src.transform, src.crs.to_wkt() if src.crs else SINUSOIDAL)
        band = re.fullmatch(r"B(\d{2})(qa)?", suffix, flags=re.IGNORECASE)
        if band and product.startswith("MCD43"):
            number = int(band.group(1))
            if band.group(2):
                fields[f"BRDF_Albedo_Band_Mandatory_Quality_Band{number}"] = (raw, attrs)
            else:
                attrs["scale_factor"] = scale or 1e-4
                fields[f"Nadir_Reflectance_Band{number}"] = (raw, attrs)
        elif band:
            attrs["scale_factor"] = 1 / scale if scale else 1e4
            fields[f"sur_refl_b{int(band.group(1)):02d}"] = (raw, attrs)
        else:
            attrs["scale_factor"] = 1 / scale if scale else 1e4
            fields[f"16 days {suffix.replace('-', ' ')}"] = (raw, attrs)
    if geobox is None:
        raise MusyqError(f"no GeoTIFF layers for the {product} granule")
    return geobox, _layers(product, fields)


def read_modis(path: Path | list[Path]) -> CoarseScene:
    """One granule: an HDF4-EOS file, or the list of its per-layer GeoTIFFs."""
    paths = [path] if isinstance(path, Path) else list(path)
    if not paths:
        raise MusyqError("no MODIS file given")
    for p in paths:
        if not p.is_file():
            raise MusyqError(f"{p}: no such MODIS file")
    product, day = _granule(paths[0])
    with paths[0].open("rb") as handle:
        hdf4 = handle.read(4) == HDF4_SIGNATURE
    geobox, layers = _read_hdf4(paths[0], product) if hdf4 else _read_geotiffs(paths, product)
    if "ndvi" not in layers and "red" in layers and "nir" in layers:
        with np.errstate(invalid="ignore", divide="ignore"):
            layers["ndvi"] = (layers["nir"] - layers["red"]) / (layers["nir"] + layers["red"])
    return CoarseScene(product, day, geobox, layers)


def find_granules(paths: list[Path]) -> list[list[Path]]:
    """The granules among files and folders: each HDF4 file alone, GeoTIFF layers grouped by granule name."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and GRANULE.search(p.name)
                            and p.suffix.lower() in (".hdf", ".tif", ".tiff"))
        elif path.is_file():
            files.append(path)
        else:
            raise MusyqError(f"{path}: no such reference file or folder")
    groups: dict[str, list[Path]] = {}
    for file in files:
        match = GRANULE.search(file.name)
        if not match:
            raise MusyqError(f"{file}: not a MODIS granule name (PRODUCT.AYYYYDDD.hHHvVV...)")
        key = file.name if file.suffix.lower() == ".hdf" else f"{file.parent}/{match.group(0)}"
        groups.setdefault(key, []).append(file)
    if not groups:
        raise MusyqError("no MODIS granules among the reference paths")
    return list(groups.values())
