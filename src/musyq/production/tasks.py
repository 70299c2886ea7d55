"""What a worker runs for one task: the stage's own driver, which writes through temporary names and skips
finished outputs, so a task run twice does its work once. Bad input comes back as a result naming the file,
not as an exception, so the scheduler can tell it from a lost worker."""

from __future__ import annotations

import time
import traceback
from datetime import date
from pathlib import Path
from typing import Any, TypedDict

import numba

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


def _composite(out: Path, params: dict[str, Any]) -> list[Path]:
    start, end = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
    cube = open_cube([out / ARD], params["tile"], start, end, with_sigma=True)
    return composite_tile(cube, periods(start, end, "month"), params["method"], out / COMPOSITES,
                          update_catalog=False)


def _reconstruct(out: Path, params: dict[str, Any]) -> list[Path]:
    start, end = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
    cube = open_cube([out / ARD], params["tile"], start, end, with_sigma=True)
    return reconstruct_tile(cube, start, end, out / ARDP, ReconstructOptions(minimum=0.0), update_catalog=False)


def execute(kind: str, params: dict[str, Any], out: str, needed_outputs: list[str], threads: int = 1) -> Outcome:
    """Run one task; ``needed_outputs`` are the outputs of the tasks it depends on, ``threads`` the cores its
    compiled kernels may use."""
    began = time.perf_counter()
    cores: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(min(threads, cores))  # for this thread only
    folder = Path(out)
    source = params.get("path") or (needed_outputs[0] if kind == "ard" and needed_outputs else None)
    try:
        if kind == "fetch":
            made = _fetch(folder, params)
        elif kind == "ard":
            made = _ard(folder, params, needed_outputs)
        elif kind == "product":
            made = _product(folder, params, needed_outputs)
        elif kind == "composite":
            made = _composite(folder, params)
        elif kind == "reconstruct":
            made = _reconstruct(folder, params)
        else:
            raise MusyqError(f"unknown task kind {kind!r}")
    except MusyqError as exc:
        culprit = exc.path if isinstance(exc, InputError) else source
        return Outcome(outputs=[], error=str(exc), failed_input=culprit, seconds=time.perf_counter() - began)
    except (ValueError, OSError, RuntimeError) as exc:  # a corrupt file deep inside a reader or GDAL
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return Outcome(outputs=[], error=detail, failed_input=source,
                       seconds=time.perf_counter() - began)
    return Outcome(outputs=[str(p) for p in made], error=None, failed_input=None, seconds=time.perf_counter() - began)
