"""Running an order on Dask: a local cluster by default or any running scheduler, the same code path. Tasks are
submitted as their inputs become ready, not as one large graph. A task whose worker was lost (killed, out of
memory) is submitted again, a bounded number of times and with fewer at once after a memory failure; a task that
failed on its input is marked failed, and its dependents with it, while the rest of the order goes on."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distributed import Client, Future, LocalCluster, as_completed

from musyq.io.stac import update_collection
from musyq.production.store import Store, Task, now
from musyq.production.tasks import ARD, ARDP, COMPOSITES, PRODUCTS, Outcome, execute
from musyq.products.make import PRODUCT_COLLECTION, PRODUCT_DESCRIPTION
from musyq.timeseries.tiles import ARDP_COLLECTION, ARDP_DESCRIPTION, COMPOSITE_COLLECTION, COMPOSITE_DESCRIPTION

MAX_ATTEMPTS = 3
WORKER_MEMORY = "6GiB"
CATALOGS = {"ard": (ARD, "musyq-ard", None), "product": (PRODUCTS, PRODUCT_COLLECTION, PRODUCT_DESCRIPTION),
            "composite": (COMPOSITES, COMPOSITE_COLLECTION, COMPOSITE_DESCRIPTION),
            "reconstruct": (ARDP, ARDP_COLLECTION, ARDP_DESCRIPTION)}
Progress = Callable[[str, str, int, int], None]  # task key, state, finished, total


@dataclass(frozen=True)
class RunSummary:
    done: int
    failed: int
    ran: int  # tasks executed in this run (finished ones are not run again)
    retried: int


def _client(scheduler: str | None, workers: int | None) -> tuple[Client, LocalCluster | None]:
    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                           memory_limit=WORKER_MEMORY, dashboard_address=None)
    return Client(cluster), cluster


def _is_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "memory" in str(exc).lower()


def run_order(store: Store, order_id: int, scheduler: str | None = None, workers: int | None = None,
              progress: Progress | None = None) -> RunSummary:
    """Run every unfinished task of the order; the store holds each task's state, timing, outputs and log."""
    order = store.order(order_id)
    out = Path(order.out)
    tasks = {t.key: t for t in order.tasks}
    for task in tasks.values():  # a run killed mid-way left some marked running: they run again
        if task.state == "running":
            store.update_task(task.id, state="planned")
            task.state = "planned"
    store.set_order_state(order_id, "running")
    client, cluster = _client(scheduler, workers)
    limit = max(1, sum(client.nthreads().values()))
    running: dict[Future[Outcome], Task] = {}
    ran = retried = 0
    written: dict[str, list[Path]] = {}
    finished = sum(t.state in ("done", "failed") for t in tasks.values())
    try:
        queue = as_completed()

        def submit_ready() -> None:
            for task in tasks.values():
                if len(running) >= limit:
                    return
                if task.state != "planned":
                    continue
                needs = [tasks[k] for k in task.depends]
                if any(n.state == "failed" for n in needs):
                    task.state = "failed"
                    store.update_task(task.id, state="failed", log="not run: " + ", ".join(
                        n.key for n in needs if n.state == "failed") + " failed")
                    continue
                if not all(n.state == "done" for n in needs):
                    continue
                inputs = [o for n in needs for o in n.outputs]
                future = client.submit(execute, task.kind, task.params, str(out), inputs,
                                       key=f"musyq-{order_id}-{task.id}-{task.attempts}", pure=False)
                task.state = "running"
                store.update_task(task.id, state="running", started=now(), attempts=task.attempts + 1)
                task.attempts += 1
                running[future] = task
                queue.add(future)
                if progress:
                    progress(task.key, "running", finished, len(tasks))

        submit_ready()
        while running:
            future = next(queue)
            task = running.pop(future)
            try:
                outcome = future.result()
            except Exception as exc:  # the worker died, or the task ran out of memory: infrastructure
                if task.attempts < MAX_ATTEMPTS:
                    retried += 1
                    task.state = "planned"
                    store.update_task(task.id, state="planned", log=f"attempt {task.attempts}: {exc!r}")
                    if _is_memory(exc):
                        limit = max(1, limit - 1)
                else:
                    task.state = "failed"
                    finished += 1
                    store.update_task(task.id, state="failed", finished=now(),
                                      log=f"gave up after {task.attempts} attempts: {exc!r}")
                submit_ready()
                continue
            ran += 1
            finished += 1
            if outcome["error"] is None:
                task.state, task.outputs = "done", outcome["outputs"]
                store.update_task(task.id, state="done", finished=now(), seconds=outcome["seconds"],
                                  outputs=outcome["outputs"], log="")
                folder, collection, description = CATALOGS[task.kind]
                items = [Path(p) for p in outcome["outputs"] if p.endswith(".json")]
                if items:
                    written.setdefault(task.kind, []).extend(items)
                    if task.kind == "ard":  # composites and ARD+ of the tile read this catalog
                        update_collection(out / folder, items)
            else:
                task.state = "failed"
                store.update_task(task.id, state="failed", finished=now(), seconds=outcome["seconds"],
                                  log=outcome["error"], failed_input=outcome["failed_input"])
            if progress:
                progress(task.key, task.state, finished, len(tasks))
            submit_ready()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    for kind, items in written.items():
        if kind != "ard":
            folder, collection, description = CATALOGS[kind]
            update_collection(out / folder, items, collection, description or collection)
    done = sum(t.state == "done" for t in tasks.values())
    failed = sum(t.state == "failed" for t in tasks.values())
    store.set_order_state(order_id, "failed" if failed else "done" if done == len(tasks) else "incomplete")
    return RunSummary(done, failed, ran, retried)
