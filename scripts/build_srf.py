"""Regenerate the packaged spectral response functions and solar spectrum.

Reads ACOLITE's tabulated RSR text files and the Thuillier (2003) solar spectrum, writes one CSV per
sensor (wavelength in nm, one column per band id, resampled to 1 nm) into ``src/musyq/data/srf`` and
the solar spectrum into ``src/musyq/data/solar``, then fills each band's SRF-weighted centre wavelength
and full width at half maximum into the sensor files.

Usage: python scripts/build_srf.py /path/to/acolite-rsr-solar
"""

from __future__ import annotations

import bz2
import json
import re
import sys
from pathlib import Path

import numpy as np

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "src" / "musyq" / "data"

MODIS_LAND_BANDS = {"8": "B1", "12": "B2", "3": "B3", "7": "B4", "14": "B5", "15": "B6", "16": "B7"}

# sensor id -> (ACOLITE file, {ACOLITE band label: musyq band id})
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    **{
        sid: (
            f"{sid}_V4.txt",
            {str(i): f"B{i:02d}" for i in range(1, 13)} | {"8A": "B8A"},
        )
        for sid in ("S2A_MSI", "S2B_MSI", "S2C_MSI")
    },
    "L8_OLI": ("L8_OLI.txt", {str(i): f"B{i}" for i in range(1, 10)}),
    "L9_OLI": ("L9_OLI.txt", {str(i): f"B{i}" for i in range(1, 10)}),
    **{f"GF1_WFV{n}": (f"GF1_WFV{n}.txt", {str(i): f"B{i}" for i in range(1, 5)}) for n in (1, 2, 3, 4)},
    "GF6_WFV": ("GF6_WFV.txt", {f"B{i}": f"B{i}" for i in range(1, 9)}),
    # ACOLITE orders the MODIS bands by wavelength; land bands 1-7 are its entries 8, 12, 3, 7, 14, 15, 16
    "TERRA_MODIS": ("Terra_MODIS.txt", MODIS_LAND_BANDS),
    "AQUA_MODIS": ("Aqua_MODIS.txt", MODIS_LAND_BANDS),
}

BAND_HEADER = re.compile(r"band\s+(\S+)", re.IGNORECASE)


def parse_rsr(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split an ACOLITE RSR text file into {band label: (wavelength nm, response)}."""
    bands: dict[str, list[tuple[float, float]]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text:
            continue
        if text[0] in "#;":
            match = BAND_HEADER.search(text)
            if match:
                current = match.group(1)
                bands[current] = []
            continue
        if current is not None:
            values = text.split()
            bands[current].append((float(values[0]), float(values[1])))
    return {k: (np.array(v)[:, 0], np.array(v)[:, 1]) for k, v in bands.items() if v}


def centre_and_fwhm(wl_nm: np.ndarray, response: np.ndarray) -> tuple[float, float]:
    """SRF-weighted centre and the width between the outermost half-maximum crossings, in um."""
    centre = float(np.trapezoid(wl_nm * response, wl_nm) / np.trapezoid(response, wl_nm))
    above = np.flatnonzero(response >= 0.5 * response.max())
    fwhm = float(wl_nm[above[-1]] - wl_nm[above[0]])
    return round(centre / 1000, 4), round(fwhm / 1000, 4)


def main(acolite: Path) -> None:
    for sensor_id, (filename, labels) in SOURCES.items():
        curves = parse_rsr(acolite / "RSR" / filename)
        grid = np.arange(
            np.floor(min(curves[k][0].min() for k in labels)),
            np.ceil(max(curves[k][0].max() for k in labels)) + 1,
        )
        columns = {}
        for label, band_id in labels.items():
            wl, resp = curves[label]
            resampled = np.interp(grid, wl, resp, left=0.0, right=0.0)
            columns[band_id] = np.clip(resampled / resampled.max(), 0.0, 1.0)
        header = "wavelength_nm," + ",".join(columns)
        table = np.column_stack([grid, *columns.values()])
        np.savetxt(PACKAGE_DATA / "srf" / f"{sensor_id}.csv", table, delimiter=",", header=header,
                   comments="", fmt=["%.0f"] + ["%.5f"] * len(columns))
        sensor_file = PACKAGE_DATA / "sensors" / f"{sensor_id}.json"
        sensor = json.loads(sensor_file.read_text())
        for band in sensor["bands"]:
            if band["id"] in columns:
                band["center_wavelength"], band["full_width_half_max"] = centre_and_fwhm(grid, columns[band["id"]])
        sensor_file.write_text(json.dumps(sensor, indent=1) + "\n")

    with bz2.open(acolite / "Solar" / "Thuillier2003.txt.bz2", "rt") as handle:
        solar = np.loadtxt(handle, comments="#")
    np.savetxt(PACKAGE_DATA / "solar" / "thuillier2003.csv", solar, delimiter=",",
               header="wavelength_nm,irradiance_w_m2_um", comments="", fmt=["%.1f", "%.4f"])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
