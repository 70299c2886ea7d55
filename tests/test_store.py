"""The order store on SQLite and on a real PostgreSQL server started for the session: the schema migrated
(idempotently), orders and tasks written and read back, keys unique per order, passwords kept out of errors."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from musyq.core.errors import MusyqError
from musyq.production.store import Order, Store, database_url


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("no PostgreSQL server binary (apt install postgresql); the SQLite store was tested")
    binaries = Path(found[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="musyq-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run(_as_postgres([str(binaries / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "musyq"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(binaries / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                                 "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql://musyq@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(binaries / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "orders.sqlite")
        return
    server = request.getfixturevalue("postgres")
    engine = create_engine(database_url(server), isolation_level="AUTOCOMMIT")
    name = f"musyq_{tmp_path.name[-12:].lower().replace('-', '_')}"
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.rsplit("/", 1)[0] + f"/{name}"
    engine.dispose()


def _order() -> Order:
    return Order(area="POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", start="2017-07-01", end="2017-08-31", products=["SR"],
                 sensors=[], resolution=30.0, inputs=["/archive"], out="/out")


def _tasks(count: int = 3) -> list[dict[str, object]]:
    return [{"key": f"ard:{k}", "kind": "ard", "params": {"tile": "31UFS", "k": k}, "depends": []}
            for k in range(count)]


def test_schema_orders_and_tasks(url: str) -> None:
    store = Store(url)
    Store(url).close()  # a second open migrates nothing
    tables = set(inspect(store.engine).get_table_names())
    assert {"orders", "tasks", "alembic_version"} <= tables
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    first, second = store.add_order(_order(), _tasks()), store.add_order(_order(), _tasks())
    assert second == first + 1
    order = store.order(first)
    assert [t.key for t in order.tasks] == ["ard:0", "ard:1", "ard:2"] and order.tasks[1].params["k"] == 1
    store.update_task(order.tasks[1].id, state="failed", log="B4.TIF: truncated", failed_input="/archive/B4.TIF")
    again = store.order(first).tasks[1]
    assert (again.state, again.failed_input) == ("failed", "/archive/B4.TIF")
    store.set_order_state(first, "done")
    assert [o.state for o in store.orders()] == ["done", "planned"]
    duplicate = _tasks()
    duplicate[1]["key"] = duplicate[0]["key"]
    with pytest.raises(IntegrityError):
        store.add_order(_order(), duplicate)
    assert len(store.orders()) == 2  # the order of the failed insert is not stored either
    many = store.add_order(_order(), _tasks(20_000))  # an order of a year over a hundred tiles
    assert len(store.order(many).tasks) == 20_000
    store.update_tasks([t.id for t in store.order(many).tasks[:1200]], state="cancelled")
    assert sum(t.state == "cancelled" for t in store.order(many).tasks) == 1200
    with pytest.raises(MusyqError, match="no order 99"):
        store.order(99)
    store.close()


def test_a_database_that_cannot_be_reached_is_named_without_its_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(MusyqError) as caught:
        Store(f"postgresql://musyq:secret@127.0.0.1:{port}/orders")
    assert "cannot open the order database" in str(caught.value) and "secret" not in str(caught.value)
