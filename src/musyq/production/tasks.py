"""What a worker runs for one task: the stage's own driver, which writes through temporary names and skips
finished outputs, so a task run twice does its work once. Bad input comes back as a result naming the file,
not as an exception, so the scheduler can tell it from a lost worker."""

from __future__ import annotations

import time
import traceback
import warnings
from datetime import date
from pathlib import Path
from typing import Any, TypedDict

import numba
from rasterio.errors import NotGeoreferencedWarning

from musyq.ard.pipeline import ArdOptions, run_ard
from musyq.core.errors import InputError, MusyqError
from musyq.io.readers import open_scene
from musyq.io.stac_inputs import fetch_scene
from musyq.products.make import ProductOptions, make_products
from musyq.timeseries.composite import periods
from musyq.timeseries.cube import open_cube
from musyq.timeseries.reconstruct import ReconstructOptions
from musyq.timeseries.tiles import composite_tile, reconstruct_tile

# folders of an order's outputs, and of the Level-1 files it fetched
ARD, PRODUCTS, COMPOSITES, ARDP, INPUTS = "ard", "products", "composites", "ardp", "inputs"


class Outcome(TypedDict):
    outputs: list[str]
    error: str | None
    failed_input: str | None
    warnings: list[str]
    seconds: float


def _fetch(out: Path, params: dict[str, Any]) -> list[Path]:
    return [fetch_scene(params["files"], out / INPUTS / params["scene"])]


def _ard(out: Path, params: dict[str, Any], fetched: list[str]) -> list[Path]:
    scene = open_scene(params.get("path") or fetched[0])
    options = ArdOptions(resolution=float(params["resolution"]), tiles=(params["tile"],))
    return [r.item_path for r in run_ard(scene, out / ARD, options) if r.item_path.exists()]


def _product(out: Path, params: dict[str, Any], ard_items: list[str]) -> list[Path]:
    if not ard_items:
        return []  # the scene left the tile empty (covered no pixel of it)
    return make_products(params["names"], [Path(p) for p in ard_items], out / PRODUCTS, ProductOptions(),
                         update_catalog=False)


def _made_items(ard_outputs: list[str]) -> bool:
    return any(p.endswith(".json") for p in ard_outputs)


def _composite(out: Path, params: dict[str, Any], ard_outputs: list[str]) -> list[Path]:
    if not _made_items(ard_outputs):
        return []  # the tile's scenes covered none of its pixels: nothing to composite
    start, end = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
    cube = open_cube([out / ARD], params["tile"], start, end, with_sigma=True)
    return composite_tile(cube, periods(start, end, "month"), params["method"], out / COMPOSITES,
                          update_catalog=False)


def _reconstruct(out: Path, params: dict[str, Any], ard_outputs: list[str]) -> list[Path]:
    if not _made_items(ard_outputs):
        return []
    start, end = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
    cube = open_cube([out / ARD], params["tile"], start, end, with_sigma=True)
    return reconstruct_tile(cube, start, end, out / ARDP, ReconstructOptions(minimum=0.0), update_catalog=False)


def _run(kind: str, folder: Path, params: dict[str, Any], needed_outputs: list[str]) -> list[Path]:
    if kind == "fetch":
        return _fetch(folder, params)
    if kind == "ard":
        return _ard(folder, params, needed_outputs)
    if kind == "product":
        return _product(folder, params, needed_outputs)
    if kind == "composite":
        return _composite(folder, params, needed_outputs)
    if kind == "reconstruct":
        return _reconstruct(folder, params, needed_outputs)
    raise MusyqError(f"unknown task kind {kind!r}")


def execute(kind: str, params: dict[str, Any], out: str, needed_outputs: list[str], threads: int = 1) -> Outcome:
    """Run one task; ``needed_outputs`` are the outputs of the tasks it depends on, ``threads`` the cores its
    compiled kernels may use. Warnings go with the outcome to the task's log, not to the worker's terminal."""
    began = time.perf_counter()
    cores: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(min(threads, cores))  # for this thread only
    source = params.get("path") or (needed_outputs[0] if kind == "ard" and needed_outputs else None)
    made: list[Path] = []
    error = culprit = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the in-memory arrays rasterio warps into
        try:
            made = _run(kind, Path(out), params, needed_outputs)
        except MusyqError as exc:
            error, culprit = str(exc), exc.path if isinstance(exc, InputError) else source
        except (ValueError, OSError, RuntimeError) as exc:  # a corrupt file deep inside a reader or GDAL
            error, culprit = "".join(traceback.format_exception_only(type(exc), exc)).strip(), source
    told = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
    return Outcome(outputs=[str(p) for p in made], error=error, failed_input=culprit, warnings=told,
                   seconds=time.perf_counter() - began)
