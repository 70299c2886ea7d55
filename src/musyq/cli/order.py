"""``musyq order``: create an order of products over an area and a period, run it on Dask, follow its tasks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table

from musyq.cli.options import console, iso_date, user_errors

if TYPE_CHECKING:
    from musyq.production.plan import Plan
    from musyq.production.run import RunSummary
    from musyq.production.store import Store

# The production stage (SQLAlchemy, Alembic, distributed: seconds to import) is imported by the order
# commands themselves, so that every other musyq command starts without it.

app = typer.Typer(help="Orders: products over an area and a period, planned, tracked and run on Dask.",
                  no_args_is_help=True)
SKIPPED_SHOWN = 10
DbOption = typer.Option(None, "--db", help="SQLAlchemy URL (postgresql://user@host/db) or SQLite file; default "
                        "~/.local/share/musyq/orders.sqlite.")


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


@app.command("create")
def create(
    area: str = typer.Option(..., "--area", help="W,S,E,N in degrees, or a GeoJSON, GeoPackage or shapefile."),
    first: str = typer.Option(..., "--from", help="First day (ISO 8601)."),
    last: str = typer.Option(..., "--to", help="Last day (ISO 8601)."),
    products: str = typer.Option("SR", "--products", help="SR, any index or FVC/LAI/FAPAR/FCOVER/ALBEDO, composite "
                                 "methods (BAP, MEDIAN, ...), ARDP; comma-separated."),
    inputs: list[str] = typer.Option(..., "--inputs", help="Folders of Level-1 products, or STAC catalogs, "
                                     "collections or item collections (files or URLs); repeat for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Where the order's catalogs go."),
    sensors: str = typer.Option("", "--sensors", help="Only these sensors, comma-separated (S2A,L8,...)."),
    resolution: float = typer.Option(30.0, "--resolution", help="Pixel size in metres."),
    db: str | None = DbOption,
) -> None:
    """Plan an order, print the plan and store it."""
    from musyq.production.area import read_area
    from musyq.production.orders import place_order
    from musyq.production.store import Store

    with user_errors():
        start, end = iso_date(first, "--from"), iso_date(last, "--to")
        names = [p.strip() for p in products.split(",") if p.strip()]
        chosen = [s.strip() for s in sensors.split(",") if s.strip()]
        order_id, plan = place_order(Store(db), read_area(area), start, end, names, chosen, resolution, inputs, out)
    print_plan(order_id, plan)
    typer.echo(order_id)


def print_plan(order_id: int, plan: Plan) -> None:
    counts = ", ".join(f"{n} {k}" for k, n in plan.counts().items())
    console.print(f"[bold green]order {order_id}[/]: {plan.scenes} scene(s), {len(plan.tiles)} tile(s) "
                  f"({', '.join(plan.tiles)}); tasks: {counts}")
    console.print(f"estimated: {_size(plan.bytes)} of outputs, {plan.seconds / 60:.1f} core-minutes")
    for path, why in list(plan.skipped.items())[:SKIPPED_SHOWN]:
        console.print(f"[yellow]skipped[/] {path}: {why}", highlight=False)
    if len(plan.skipped) > SKIPPED_SHOWN:
        console.print(f"[yellow]skipped[/] {len(plan.skipped) - SKIPPED_SHOWN} more input(s)")


@app.command("run")
def run(
    order_id: int = typer.Argument(..., help="The order to run."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="tcp://HOST:PORT of a running Dask scheduler "
                                         "(default: a local cluster)."),
    workers: int | None = typer.Option(None, "--workers", help="Local cluster workers (default: one per core)."),
    db: str | None = DbOption,
) -> None:
    """Run the order's unfinished tasks."""
    from musyq.production.store import Store

    with user_errors():
        summary = run_with_progress(Store(db), order_id, scheduler, workers)
    if summary.failed:
        raise typer.Exit(1)


def run_with_progress(store: Store, order_id: int, scheduler: str | None = None,
                      workers: int | None = None) -> RunSummary:
    """Run an order with a bar for the order and a line for each running task; failures are told as they come."""
    from musyq.production.run import Event, run_order

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        overall = bar.add_task(f"order {order_id}", total=None)
        rows: dict[str, TaskID] = {}

        def show(event: Event) -> None:
            bar.update(overall, completed=event.finished, total=event.total)
            if event.state == "running":
                rows[event.key] = bar.add_task(f"  {event.key}", total=None)
                return
            if event.key in rows:
                bar.remove_task(rows.pop(event.key))
            if event.state == "failed":
                bar.console.print(f"[red]failed[/] {event.key}: {event.message}", soft_wrap=True, highlight=False)
            elif event.state == "retrying":
                bar.console.print(f"[yellow]retrying[/] {event.key}: {event.message}", highlight=False)

        summary = run_order(store, order_id, scheduler, workers, show)
    colour = "green" if summary.failed == 0 else "red"
    console.print(f"[bold {colour}]order {order_id}:[/] {summary.done} done, {summary.failed} failed; "
                  f"{summary.ran} task(s) ran now, {summary.retried} retried")
    return summary


@app.command("list")
def list_orders(db: str | None = DbOption) -> None:
    """Every order with its state and task counts."""
    from musyq.production.store import Store

    with user_errors():
        store = Store(db)
        orders = store.orders()
        table = Table("id", "created", "state", "period", "products", "tasks (done/failed/all)")
        for order in orders:
            tasks = store.order(order.id).tasks
            table.add_row(str(order.id), f"{order.created:%Y-%m-%d %H:%M}", order.state, f"{order.start}..{order.end}",
                          ",".join(order.products), f"{sum(t.state == 'done' for t in tasks)}/"
                          f"{sum(t.state == 'failed' for t in tasks)}/{len(tasks)}")
    console.print(table)


@app.command("show")
def show(order_id: int = typer.Argument(...), db: str | None = DbOption) -> None:
    """Each task's state, attempts, duration, and the log and input of a failed one."""
    from musyq.production.store import Store, now

    with user_errors():
        order = Store(db).order(order_id)
    table = Table("task", "state", "attempts", "seconds")
    clock = now()
    for task in order.tasks:
        if task.state == "running" and task.started:
            seconds = f"{(clock - task.started).total_seconds():.0f} so far"
        else:
            seconds = f"{task.seconds:.1f}" if task.seconds is not None else ""
        table.add_row(task.key, task.state, str(task.attempts), seconds)
    counts = Counter(t.state for t in order.tasks)
    console.print(f"order {order.id}: {order.state}, {order.start}..{order.end}, {','.join(order.products)}, "
                  f"out {order.out}")
    console.print(table)
    console.print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    for task in order.tasks:
        if task.state == "failed":
            where = f" (input: {task.failed_input})" if task.failed_input else ""
            console.print(f"[red]failed[/] {task.key}{where}: {task.log}", soft_wrap=True, highlight=False)


@app.command("cancel")
def cancel(order_id: int = typer.Argument(...), db: str | None = DbOption) -> None:
    """Mark the order's unfinished tasks cancelled (a later run skips them)."""
    from musyq.production.store import Store

    with user_errors():
        store = Store(db)
        order = store.order(order_id)
        for task in order.tasks:
            if task.state in ("planned", "running"):
                store.update_task(task.id, state="cancelled")
        store.set_order_state(order_id, "cancelled")
    console.print(f"order {order_id} cancelled")


@app.command("retry")
def retry(order_id: int = typer.Argument(...), db: str | None = DbOption) -> None:
    """Put failed and cancelled tasks back to planned; `musyq order run` then runs them."""
    from musyq.production.store import Store

    with user_errors():
        store = Store(db)
        order = store.order(order_id)
        again = [t for t in order.tasks if t.state in ("failed", "cancelled")]
        for task in again:
            store.update_task(task.id, state="planned", attempts=0, log="", failed_input=None)
        store.set_order_state(order_id, "planned")
    console.print(f"order {order_id}: {len(again)} task(s) planned again")
