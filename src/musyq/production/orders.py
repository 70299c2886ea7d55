"""Placing an order: its plan checked and made first, then the order and every task stored together."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from odc.geo.geom import Geometry

from musyq.core.errors import MusyqError
from musyq.production.plan import Plan, plan_order
from musyq.production.store import Order, Store


def _absolute(source: str) -> str:
    return source if "://" in source else str(Path(source).resolve())


def place_order(store: Store, area: Geometry, start: date, end: date, products: Sequence[str],
                sensors: Sequence[str], resolution: float, inputs: Sequence[str], out: Path) -> tuple[int, Plan]:
    """The new order's id and its plan; nothing is stored when the request is wrong."""
    if not resolution > 0:
        raise MusyqError(f"--resolution must be positive, not {resolution}")
    plan = plan_order(inputs, area, start, end, list(products), list(sensors) or None, resolution)
    order = Order(area=area.to_crs("EPSG:4326").wkt, start=start.isoformat(), end=end.isoformat(),
                  products=list(products), sensors=list(sensors), resolution=resolution,
                  inputs=[_absolute(i) for i in inputs], out=str(out.resolve()))
    order_id = store.add_order(order, [{"key": t.key, "kind": t.kind, "params": t.params, "depends": list(t.depends)}
                                       for t in plan.tasks])
    return order_id, plan
