"""Running an order on Dask: a local cluster by default or any running scheduler, the same code path. Tasks are
submitted as their inputs become ready, not as one large graph. A task whose worker was lost (killed, out of
memory) is submitted again, a bounded number of times and with fewer at once after a memory failure; a task that
failed on its input is marked failed, and its dependents with it, while the rest of the order goes on."""

from __future__ import annotations

import os
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from distributed import Client, Future, LocalCluster, as_completed
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from musyq.core.errors import MusyqError
from musyq.io.stac import update_collection
from musyq.production.store import Store, Task, now
from musyq.production.tasks import ARD, ARDP, COMPOSITES, PRODUCTS, Outcome, execute
from musyq.products.make import PRODUCT_COLLECTION, PRODUCT_DESCRIPTION
from musyq.timeseries.tiles import ARDP_COLLECTION, ARDP_DESCRIPTION, COMPOSITE_COLLECTION, COMPOSITE_DESCRIPTION

MAX_ATTEMPTS = 3
WORKER_MEMORY = 6 * 2**30  # bytes a local worker may hold at most; less where the machine's memory is shared out
WORKER_WAIT_S = 120
CATALOGS = {"ard": (ARD, "musyq-ard", None), "product": (PRODUCTS, PRODUCT_COLLECTION, PRODUCT_DESCRIPTION),
            "composite": (COMPOSITES, COMPOSITE_COLLECTION, COMPOSITE_DESCRIPTION),
            "reconstruct": (ARDP, ARDP_COLLECTION, ARDP_DESCRIPTION)}
LOST = (KilledWorker, CommClosedError, MemoryError, ConnectionError, TimeoutError)  # infrastructure, not input


@dataclass(frozen=True)
class Event:
    """One change of a task's state, for progress displays."""
    key: str
    state: str  # running, done, failed, retrying
    finished: int
    total: int
    message: str = ""


Progress = Callable[[Event], None]


@dataclass(frozen=True)
class RunSummary:
    done: int
    failed: int
    ran: int  # tasks executed in this run (finished ones are not run again)
    retried: int


def _client(scheduler: str | None, workers: int | None) -> tuple[Client, LocalCluster | None]:
    if scheduler:
        try:
            client = Client(scheduler, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise MusyqError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        return client, None
    # importing the stages at start-up, not in the first task, keeps the task timings honest
    count = workers or os.cpu_count() or 1
    memory = min(WORKER_MEMORY, int(0.9 * psutil.virtual_memory().total / count))
    cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, memory_limit=memory,
                           dashboard_address=None, preload=["musyq.production.tasks"])
    return Client(cluster), cluster


def threads_per_task(client: Client) -> int:
    """The cores a task may use for its compiled kernels: each host's cores shared by the task slots on it, so
    that a worker per core does not start a kernel thread per core as well."""
    cores = client.run(os.cpu_count)
    slots: Counter[str] = Counter()
    host_cores: dict[str, int] = {}
    for address, worker in client.scheduler_info(n_workers=-1)["workers"].items():
        slots[worker["host"]] += worker["nthreads"]
        host_cores[worker["host"]] = cores.get(address) or 1
    return max(1, min((host_cores[h] // n for h, n in slots.items() if n), default=1))


def _told(warnings: list[str]) -> str:
    return "\n".join(f"warning: {w}" for w in warnings)


class _Graph:
    """The order's tasks, with counts of unfinished needs, so that the ready ones are found without a scan."""

    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = {t.key: t for t in tasks}
        self.dependents: dict[str, list[str]] = {k: [] for k in self.tasks}
        self.waiting: dict[str, int] = {}
        for task in tasks:
            for need in task.depends:
                self.dependents[need].append(task.key)
            self.waiting[task.key] = sum(self.tasks[n].state != "done" for n in task.depends)
        self.ready = deque(t.key for t in tasks if t.state == "planned" and self.waiting[t.key] == 0)

    def finished(self, key: str) -> None:
        for dependent in self.dependents[key]:
            self.waiting[dependent] -= 1
            if self.waiting[dependent] == 0 and self.tasks[dependent].state == "planned":
                self.ready.append(dependent)

    def downstream(self, key: str) -> list[Task]:
        """The planned tasks that need ``key``, directly or through others."""
        found, stack, seen = [], list(self.dependents[key]), set()
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            if self.tasks[k].state == "planned":
                found.append(self.tasks[k])
            stack += self.dependents[k]
        return found


def run_order(store: Store, order_id: int, scheduler: str | None = None, workers: int | None = None,
              progress: Progress | None = None) -> RunSummary:
    """Run every unfinished task of the order; the store holds each task's state, timing, outputs and log."""
    order = store.order(order_id)
    out = Path(order.out)
    interrupted = [t for t in order.tasks if t.state == "running"]  # a killed run left them: they run again
    store.update_tasks([t.id for t in interrupted], state="planned")
    for task in interrupted:
        task.state = "planned"
    graph = _Graph(list(order.tasks))
    total = len(graph.tasks)
    finished = sum(t.state in ("done", "failed") for t in graph.tasks.values())
    store.set_order_state(order_id, "running")
    client, cluster = _client(scheduler, workers)
    running: dict[Future[Outcome], Task] = {}
    ran = retried = 0
    written: dict[str, list[Path]] = {}
    # ARD items not yet in the ARD catalog, listed in batches rather than one rewrite a task; an earlier run killed
    # before it listed its items left them to this one
    unlisted = [Path(p) for t in graph.tasks.values() if t.kind == "ard" and t.state == "done"
                for p in t.outputs if p.endswith(".json") and Path(p).exists()]

    def tell(task: Task, state: str, message: str = "") -> None:
        if progress:
            progress(Event(task.key, state, finished, total, message))

    def fail_downstream(task: Task) -> None:
        nonlocal finished
        blocked = graph.downstream(task.key)
        store.update_tasks([t.id for t in blocked], state="failed", log=f"not run: {task.key} failed")
        for other in blocked:
            other.state = "failed"
            finished += 1
            tell(other, "failed", f"not run: {task.key} failed")

    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        threads = threads_per_task(client)
        limit = max(1, sum(client.nthreads().values()))
        queue = as_completed()
        for task in graph.tasks.values():  # planned tasks behind a task that failed in an earlier run
            if task.state == "failed":
                fail_downstream(task)

        def submit_ready() -> None:
            nonlocal unlisted
            while graph.ready and len(running) < limit:
                task = graph.tasks[graph.ready.popleft()]
                if task.state != "planned":
                    continue
                if task.kind in ("composite", "reconstruct") and unlisted:  # they read the ARD catalog
                    update_collection(out / ARD, unlisted)
                    unlisted = []
                inputs = [o for k in task.depends for o in graph.tasks[k].outputs]
                future = client.submit(execute, task.kind, task.params, str(out), inputs, threads,
                                       key=f"musyq-{order_id}-{task.id}-{task.attempts}", pure=False)
                task.state, task.attempts = "running", task.attempts + 1
                store.update_task(task.id, state="running", started=now(), attempts=task.attempts)
                running[future] = task
                queue.add(future)
                tell(task, "running")

        submit_ready()
        while running:
            future = next(queue)
            task = running.pop(future)
            try:
                outcome = future.result()
            except LOST as exc:  # the worker died or ran out of memory: run it again, fewer at once if memory
                if task.attempts < MAX_ATTEMPTS:
                    retried += 1
                    task.state = "planned"
                    store.update_task(task.id, state="planned", log=f"attempt {task.attempts}: {exc!r}")
                    graph.ready.appendleft(task.key)
                    if isinstance(exc, MemoryError) or "memory" in str(exc).lower():
                        limit = max(1, limit - 1)
                    tell(task, "retrying", repr(exc))
                else:
                    task.state = "failed"
                    finished += 1
                    store.update_task(task.id, state="failed", finished=now(),
                                      log=f"gave up after {task.attempts} attempts: {exc!r}")
                    tell(task, "failed", f"gave up after {task.attempts} attempts")
                    fail_downstream(task)
                submit_ready()
                continue
            except Exception as exc:  # a fault in the task itself: running it again would fail the same way
                outcome = Outcome(outputs=[], error="".join(traceback.format_exception(exc)).strip(),
                                  failed_input=None, warnings=[], seconds=0.0)
            ran += 1
            finished += 1
            if outcome["error"] is None:
                task.state, task.outputs = "done", outcome["outputs"]
                store.update_task(task.id, state="done", finished=now(), seconds=outcome["seconds"],
                                  outputs=outcome["outputs"], log=_told(outcome["warnings"]))
                items = [Path(p) for p in outcome["outputs"] if p.endswith(".json")]
                if items:
                    written.setdefault(task.kind, []).extend(items)
                    if task.kind == "ard":
                        unlisted += items
                graph.finished(task.key)
                tell(task, "done", f"{outcome['seconds']:.1f} s")
            else:
                task.state = "failed"
                store.update_task(task.id, state="failed", finished=now(), seconds=outcome["seconds"],
                                  log="\n".join(filter(None, (outcome["error"], _told(outcome["warnings"])))),
                                  failed_input=outcome["failed_input"])
                tell(task, "failed", outcome["error"].splitlines()[-1])
                fail_downstream(task)
            submit_ready()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    if unlisted:
        update_collection(out / ARD, unlisted)
    for kind, items in written.items():
        if kind != "ard":
            folder, collection, description = CATALOGS[kind]
            update_collection(out / folder, items, collection, description or collection)
    done = sum(t.state == "done" for t in graph.tasks.values())
    failed = sum(t.state == "failed" for t in graph.tasks.values())
    store.set_order_state(order_id, "failed" if failed else "done" if done == total else "incomplete")
    return RunSummary(done, failed, ran, retried)
