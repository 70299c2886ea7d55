"""Spectral indices from the Awesome Spectral Indices catalog (through ``spyndex``, so no formula is copied) on
musyq's harmonized band names, each with its uncertainty propagated from the reflectance uncertainty.

The propagation is first order, ``sigma_f^2 = sum_k (df/dx_k sigma_k)^2`` over independent bands, with each
derivative taken by the complex step ``Im f(x + i h e_k) / h``: exact to rounding for the catalog's formulas
(rational and power expressions), unlike finite differences, and with no symbolic algebra.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import spyndex
from numpy.typing import NDArray

from musyq.core.errors import MusyqError

# musyq's harmonized band names -> the catalog's band codes
BAND_CODES = {"coastal": "A", "blue": "B", "green": "G", "red": "R", "rededge1": "RE1", "rededge2": "RE2",
              "rededge3": "RE3", "nir": "N", "swir16": "S1", "swir22": "S2"}
CODE_BANDS = {code: name for name, code in BAND_CODES.items()}
# names users know that the catalog spells otherwise
ALIASES = {"NDRE": "NDREI"}
CHUNK = 1 << 21  # values per evaluation: temporaries of 8 MB, and few calls into the catalog
THREADS = 2
STEP = 1e-20  # the complex step: far below any rounding (float32 too), so the real part is untouched


class IndexValue(NamedTuple):
    value: NDArray[np.floating]
    sigma: NDArray[np.floating] | None  # None where no band uncertainty was given


def catalog_name(name: str) -> str:
    """The catalog's spelling of an index: itself, a known alias, or the one entry equal but for case."""
    if name in spyndex.indices:
        return name
    if name.upper() in ALIASES:
        return ALIASES[name.upper()]
    spelled = [k for k in spyndex.indices if k.lower() == name.lower()]
    return spelled[0] if len(spelled) == 1 else name


def index_bands(name: str) -> tuple[list[str], list[str]]:
    """The harmonized bands and the catalog constants an index needs."""
    if name not in spyndex.indices:
        close = [k for k in spyndex.indices if k.lower() == name.lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise MusyqError(f"{name!r} is not an index of the Awesome Spectral Indices catalog{hint}")
    bands, constants = [], []
    for code in spyndex.indices[name].bands:
        if code in CODE_BANDS:
            bands.append(CODE_BANDS[code])
        elif code in spyndex.constants:
            constants.append(code)
        else:
            raise MusyqError(f"{name} needs the catalog band {code!r}, which no musyq sensor provides")
    return bands, constants


def available_indices(bands: set[str]) -> list[str]:
    """Every catalog index whose bands are all among ``bands`` (harmonized names)."""
    found = []
    for name in spyndex.indices:
        try:
            needed, _ = index_bands(name)
        except MusyqError:
            continue
        if set(needed) <= bands:
            found.append(name)
    return sorted(found)


def compute_index(name: str, bands: Mapping[str, NDArray[np.floating]],
                  uncertainty: Mapping[str, NDArray[np.floating]] | None = None,
                  constants: Mapping[str, float] | None = None) -> IndexValue:
    """The index ``name`` of reflectance ``bands`` (harmonized names, any equal shapes); with ``uncertainty``
    (one standard deviation per band, same shapes) also its propagated standard deviation."""
    needed, needed_constants = index_bands(name)
    missing = [b for b in needed if b not in bands]
    if missing:
        raise MusyqError(f"{name} needs {', '.join(missing)}, which the input lacks (it has "
                         f"{', '.join(sorted(bands)) or 'no bands'})")
    params: dict[str, object] = {}
    for code in needed_constants:
        given = (constants or {}).get(code)
        params[code] = float(given if given is not None else spyndex.constants[code].default)
    if uncertainty is not None:
        absent = [b for b in needed if b not in uncertainty]
        if absent:
            raise MusyqError(f"no uncertainty for {', '.join(absent)}, which {name} needs")
    # float32 reflectance (as read from the ARD) is evaluated in float32 and complex64, at a third of the cost;
    # float64 input in float64 and complex128
    dtype: type[np.floating] = np.float64 if any(np.asarray(bands[b]).dtype == np.float64 for b in needed) \
        else np.float32
    shape = np.shape(bands[needed[0]])
    flat: dict[str, NDArray[np.floating]] = {b: np.asarray(bands[b], dtype=dtype).reshape(-1) for b in needed}
    spread = None if uncertainty is None else {
        b: np.broadcast_to(np.asarray(uncertainty[b], dtype=dtype), shape).reshape(-1) for b in needed}
    value: NDArray[np.floating] = np.empty(flat[needed[0]].size, dtype=dtype)
    sigma = None if spread is None else np.empty_like(value)

    def evaluate(part: slice, shifted: str | None = None) -> NDArray[np.generic]:
        point = {BAND_CODES[b]: (np.add(v[part], 1j * STEP) if b == shifted else v[part]) for b, v in flat.items()}
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return np.asarray(spyndex.computeIndex(name, params=params | point))

    def chunk(start: int) -> None:
        part = slice(start, start + CHUNK)
        value[part] = np.real(evaluate(part))
        if spread is None or sigma is None:
            return
        variance = np.zeros(value[part].shape, dtype=dtype)
        for band in needed:
            variance += (np.imag(evaluate(part, band)) / dtype(STEP) * spread[band][part]) ** 2
        sigma[part] = np.sqrt(variance)

    # cache-sized chunks on two threads (numpy releases the GIL in its loops)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(chunk, range(0, value.size, CHUNK)))
    return IndexValue(value.reshape(shape), None if sigma is None else sigma.reshape(shape))
