"""Labelled cloud patches and how well a mask matches them.

The reader takes the layout of the USGS L8 Biome patches (Foga et al. 2017) as the field shares them:
``images/NAME.tif`` (float32 TOA reflectance of OLI B2-B7 and B9, then TIRS B10 in kelvin) and
``masks/NAME.tif`` (0 fill, 64 cloud shadow, 128 clear, 192 thin cloud, 255 cloud). The scores are
those of the three classes the labels separate: clear (with water and snow), shadow and cloud.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray

from musyq.ard.cloudmask import MaskInputs, compute_mask
from musyq.core.errors import InputError
from musyq.io.output import CLEAR, CLOUD, CLOUD_SHADOW, FILL

BIOME_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22", "cirrus")
BIOME_CODES = {0: FILL, 64: CLOUD_SHADOW, 128: CLEAR, 192: CLOUD, 255: CLOUD}
SCORED = (CLEAR, CLOUD_SHADOW, CLOUD)


@dataclass(frozen=True)
class LabelledPatch:
    """TOA reflectance by common band name, brightness temperature (K), and the labels as musyq codes."""

    name: str
    bands: dict[str, NDArray[np.float32]]
    temperature: NDArray[np.float32] | None
    labels: NDArray[np.uint8]

    @property
    def biome(self) -> str:
        return self.name.split("_")[0]

    @property
    def labels_shadow(self) -> bool:
        """Whether the patch's labels have a shadow class at all (L8 Biome labels it in some scenes only)."""
        return bool((self.labels == CLOUD_SHADOW).any())


def read_biome_patch(image: Path) -> LabelledPatch:
    """One L8 Biome patch: ``.../images/NAME.tif`` and its ``.../masks/NAME.tif``."""
    mask = image.parent.parent / "masks" / image.name
    try:
        with rasterio.open(image) as source:
            data = source.read().astype(np.float32)
        with rasterio.open(mask) as source:
            raw = source.read(1)
    except rasterio.RasterioIOError as exc:
        raise InputError(image, f"not a readable labelled patch ({exc})") from None
    if data.shape[0] not in (7, 8) or raw.shape != data.shape[1:]:
        raise InputError(image, f"expected 7 reflectance bands and a temperature band over the mask's "
                                f"{raw.shape} pixels, found {data.shape}")
    unknown = set(np.unique(raw).tolist()) - set(BIOME_CODES)
    if unknown:
        raise InputError(mask, f"label values {sorted(unknown)} are not L8 Biome codes {sorted(BIOME_CODES)}")
    labels = np.zeros(raw.shape, dtype=np.uint8)
    for value, code in BIOME_CODES.items():
        labels[raw == value] = code
    bands = {n: np.ascontiguousarray(data[i]) for i, n in enumerate(BIOME_BANDS)}
    temperature = np.ascontiguousarray(data[7]) if data.shape[0] == 8 else None
    return LabelledPatch(image.stem, bands, temperature, labels)


def biome_patches(folder: Path) -> list[LabelledPatch]:
    """Every patch under ``folder`` (an ``images``/``masks`` pair, or folders holding such pairs)."""
    images = sorted(folder.glob("images/*.tif")) or sorted(folder.glob("*/images/*.tif"))
    if not images:
        raise InputError(folder, "no labelled patches (images/*.tif with masks/*.tif beside) found")
    return [read_biome_patch(path) for path in images]


def three_classes(codes: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Clear (with water and snow), shadow and cloud, fill kept."""
    return np.where(np.isin(codes, (CLOUD, CLOUD_SHADOW, FILL)), codes, CLEAR).astype(np.uint8)


def confusion(predicted: NDArray[np.uint8], reference: NDArray[np.uint8], shadow_labelled: bool = True,
              ) -> NDArray[np.float64]:
    """3 x 3 counts (reference rows, prediction columns: clear, shadow, cloud) over labelled pixels.

    Where the labels have no shadow class, predicted shadow is scored as clear: such labels call
    shadows clear, so neither answer can be told right or wrong there.
    """
    ours, truth = three_classes(predicted), three_classes(reference)
    if not shadow_labelled:
        ours = np.where(ours == CLOUD_SHADOW, CLEAR, ours).astype(np.uint8)
    keep = truth != FILL
    ours, truth = ours[keep], truth[keep]
    index = np.zeros(256, dtype=np.int64)
    index[list(SCORED)] = np.arange(len(SCORED))
    pairs = index[truth] * 3 + index[ours]
    return np.bincount(pairs, minlength=9).reshape(3, 3).astype(np.float64)


@dataclass(frozen=True)
class Scores:
    """Overall accuracy and per-class precision and recall from a confusion matrix."""

    matrix: NDArray[np.float64]

    @staticmethod
    def pooled(matrices: Iterable[NDArray[np.float64]]) -> Scores:
        return Scores(np.sum(list(matrices), axis=0))

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.matrix) / max(self.matrix.sum(), 1.0))

    def precision(self, code: int) -> float:
        i = SCORED.index(code)
        column = self.matrix[:, i].sum()
        return float(self.matrix[i, i] / column) if column else float("nan")

    def recall(self, code: int) -> float:
        i = SCORED.index(code)
        row = self.matrix[i].sum()
        return float(self.matrix[i, i] / row) if row else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "cloud_precision": self.precision(CLOUD),
                "cloud_recall": self.recall(CLOUD), "shadow_precision": self.precision(CLOUD_SHADOW),
                "shadow_recall": self.recall(CLOUD_SHADOW), "pixels": float(self.matrix.sum())}


@dataclass(frozen=True)
class PatchScore:
    name: str
    biome: str
    matrix: NDArray[np.float64]


def mask_patch(patch: LabelledPatch, method: str, sun_zenith: float, sun_azimuth: float,
               bands: tuple[str, ...] | None = None) -> PatchScore:
    """Mask a patch (30 m, nadir view) with the stated sun, optionally with some bands only, and score it."""
    reflectance = patch.bands if bands is None else {k: v for k, v in patch.bands.items() if k in bands}
    temperature = patch.temperature if bands is None or "lwir11" in bands else None
    result = compute_mask(MaskInputs(reflectance, sun_zenith, sun_azimuth, 30.0, brightness_temperature=temperature,
                                     source=patch.name), method)
    return PatchScore(patch.name, patch.biome, confusion(result.quality, patch.labels, patch.labels_shadow))


def score_table(scores: list[PatchScore]) -> list[tuple[str, Scores]]:
    """Rows of scores: every patch, every biome, then all patches pooled."""
    rows = [(s.name, Scores(s.matrix)) for s in scores]
    for biome in sorted({s.biome for s in scores}):
        rows.append((f"{biome} (all)", Scores.pooled(s.matrix for s in scores if s.biome == biome)))
    rows.append(("pooled", Scores.pooled(s.matrix for s in scores)))
    return rows
