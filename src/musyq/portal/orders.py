"""Orders placed from the portal: a drawn box, a period and products over the archive the portal was started
with, planned into the production store and run one after another by ``musyq order run`` in its own process
(the Dask cluster lives and dies with the run, not with the web server). Their outputs land inside the served
catalog, so finished tiles appear on the map."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from odc.geo.geom import box

from musyq.core.errors import MusyqError
from musyq.production.orders import place_order
from musyq.production.plan import split_products
from musyq.portal.catalog import NotFound
from musyq.production.store import Order, Store

ORDERS_FOLDER = "orders"  # inside the catalog
MAX_DAYS = 3 * 366
RESOLUTIONS = (10.0, 1000.0)
TASKS_SHOWN = 200


class OrderRefused(MusyqError, ValueError):
    """An order the portal does not place: its area, period, products or resolution."""


@dataclass(frozen=True)
class OrderRequest:
    bbox: tuple[float, float, float, float]  # W, S, E, N in degrees
    start: date
    end: date
    products: tuple[str, ...]
    sensors: tuple[str, ...]
    resolution: float


class OrderDesk:
    """Places orders over ``inputs`` into ``store`` and runs them in turn, in the background."""

    def __init__(self, store: Store, inputs: list[str], catalog: Path, max_area: float,
                 scheduler: str | None = None, workers: int | None = None) -> None:
        self.store, self.inputs, self.max_area = store, inputs, max_area
        self.scheduler, self.workers = scheduler, workers
        self.folder = catalog / ORDERS_FOLDER
        self._queue: list[int] = []
        self._wake = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        # orders of this portal a stopped server left unfinished run again
        self._queue += [o.id for o in store.orders() if o.state in ("planned", "running") and self._ours(o)]
        self._thread = threading.Thread(target=self._run_orders, name="musyq-orders", daemon=True)
        self._thread.start()

    def _ours(self, order: Order) -> bool:
        return Path(order.out).parent == self.folder.resolve()

    def check(self, request: OrderRequest) -> None:
        west, south, east, north = request.bbox
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise OrderRefused(f"bbox {list(request.bbox)} is empty or outside -180..180, -90..90")
        if (east - west) * (north - south) > self.max_area:
            raise OrderRefused(f"the area is {(east - west) * (north - south):.2f} square degrees; this portal "
                               f"takes orders up to {self.max_area:g}")
        if request.end < request.start:
            raise OrderRefused(f"the period ends ({request.end}) before it starts ({request.start})")
        if (request.end - request.start).days > MAX_DAYS:
            raise OrderRefused(f"the period is {(request.end - request.start).days} days; at most {MAX_DAYS}")
        if not RESOLUTIONS[0] <= request.resolution <= RESOLUTIONS[1]:
            raise OrderRefused(f"resolution {request.resolution:g} m is outside {RESOLUTIONS[0]:g}..{RESOLUTIONS[1]:g}")
        if not request.products:
            raise OrderRefused("name at least one product")
        split_products(list(request.products))

    def place(self, request: OrderRequest) -> dict[str, Any]:
        """Plan and store the order, queue it, and say what it holds."""
        self.check(request)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        out = self.folder / f"{stamp}-{secrets.token_hex(3)}"
        try:
            order_id, plan = place_order(self.store, box(*request.bbox, "EPSG:4326"), request.start, request.end,
                                         list(request.products), list(request.sensors), request.resolution,
                                         self.inputs, out)
        except MusyqError as exc:  # the archive's own paths stay on the server
            message = str(exc)
            for source in self.inputs:
                message = message.replace(str(Path(source).resolve()), "<archive>").replace(source, "<archive>")
            raise OrderRefused(message) from None
        with self._wake:
            self._queue.append(order_id)
            self._wake.notify()
        return {"id": order_id, "scenes": plan.scenes, "tiles": plan.tiles, "tasks": plan.counts(),
                "skipped": len(plan.skipped)}

    def status(self, order_id: int) -> dict[str, Any]:
        try:
            order = self.store.order(order_id)
        except MusyqError:
            order = None
        if order is None or not self._ours(order):
            raise NotFound(f"no order {order_id} from this portal")
        counts = Counter(t.state for t in order.tasks)
        return {"id": order.id, "state": order.state, "created": order.created.isoformat(),
                "start": order.start, "end": order.end, "products": order.products,
                "collection": ".".join((ORDERS_FOLDER, Path(order.out).name)), "counts": dict(counts),
                "tasks": [{"key": t.key, "kind": t.kind, "state": t.state, "attempts": t.attempts,
                           "seconds": t.seconds} for t in order.tasks[:TASKS_SHOWN]]}

    def orders(self) -> list[dict[str, Any]]:
        return [{"id": o.id, "state": o.state, "created": o.created.isoformat(), "start": o.start, "end": o.end,
                 "products": o.products} for o in self.store.orders() if self._ours(o)]

    def _run_orders(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                order_id = self._queue.pop(0)
                command = [sys.executable, "-m", "musyq", "order", "run", str(order_id), "--db", self.store.url]
                if self.scheduler:
                    command += ["--scheduler", self.scheduler]
                if self.workers:
                    command += ["--workers", str(self.workers)]
                self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._process.wait()

    def close(self) -> None:
        """Stop the running order (its unfinished tasks run again when the portal next starts)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._thread.join(5)
        self.store.close()
