"""The order store: orders and their tasks in any SQLAlchemy database (an SQLite file by default, PostgreSQL
when several machines share it), its schema created and migrated by Alembic."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from musyq.core.errors import MusyqError

DEFAULT_DB = Path.home() / ".local" / "share" / "musyq" / "orders.sqlite"


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=now)
    state: Mapped[str] = mapped_column(String(16), default="planned")  # planned, running, done, failed, cancelled
    area: Mapped[str] = mapped_column(Text)  # WKT, EPSG:4326
    start: Mapped[str] = mapped_column(String(10))
    end: Mapped[str] = mapped_column(String(10))
    products: Mapped[list[str]] = mapped_column(JSON)
    sensors: Mapped[list[str]] = mapped_column(JSON)
    resolution: Mapped[float] = mapped_column(Float)
    inputs: Mapped[list[str]] = mapped_column(JSON)
    out: Mapped[str] = mapped_column(Text)
    tasks: Mapped[list[Task]] = relationship(back_populates="order", cascade="all, delete-orphan",
                                             order_by="Task.id")


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200))  # unique within the order, e.g. ard:<scene>:<tile>
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    depends: Mapped[list[str]] = mapped_column(JSON, default=list)  # keys of the tasks it needs
    state: Mapped[str] = mapped_column(String(16), default="planned")  # planned, running, done, failed, cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    outputs: Mapped[list[str]] = mapped_column(JSON, default=list)
    log: Mapped[str] = mapped_column(Text, default="")
    failed_input: Mapped[str | None] = mapped_column(Text, nullable=True)
    order: Mapped[Order] = relationship(back_populates="tasks")


def database_url(db: str | Path | None) -> str:
    """A SQLAlchemy URL: given as one, or an SQLite file path (default ``~/.local/share/musyq/orders.sqlite``)."""
    if db is not None and "://" in str(db):
        url = str(db)
        # psycopg 3 is the PostgreSQL driver musyq installs; a bare postgresql:// would ask for psycopg2
        return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url
    path = Path(db) if db is not None else DEFAULT_DB
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def migrate(url: str) -> None:
    """Create or upgrade the schema to the newest revision."""
    config = Config()
    config.set_main_option("script_location", str(files("musyq") / "production" / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


class Store:
    """Orders and tasks behind one database URL."""

    def __init__(self, db: str | Path | None = None) -> None:
        self.url = database_url(db)
        try:
            self.engine: Engine = create_engine(self.url, future=True)
            migrate(self.url)
        except (ArgumentError, OperationalError) as exc:
            raise MusyqError(f"cannot open the order database {_public(self.url)}: {exc.args[0]}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Close the pooled connections (a long-lived process that is done with this database)."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def add_order(self, order: Order, tasks: Sequence[dict[str, Any]]) -> int:
        """Store an order and its tasks (column values by name) in one transaction, the tasks as one bulk insert:
        an order of a year over a hundred tiles has tens of thousands."""
        with self.session() as session:
            session.add(order)
            session.flush()
            if tasks:
                session.execute(insert(Task), [{"order_id": order.id, "state": "planned", "attempts": 0,
                                                "outputs": [], "log": ""} | t for t in tasks])
            return order.id

    def order(self, order_id: int) -> Order:
        with self.session() as session:
            found = session.get(Order, order_id)
            if found is None:
                raise MusyqError(f"no order {order_id} in {_public(self.url)}")
            found.tasks  # load them while the session is open
            return found

    def orders(self) -> Sequence[Order]:
        with self.session() as session:
            return session.scalars(select(Order).order_by(Order.id)).all()

    def update_task(self, task_id: int, **fields: object) -> None:
        with self.session() as session:
            task = session.get(Task, task_id)
            if task is not None:
                for key, value in fields.items():
                    setattr(task, key, value)

    def update_tasks(self, task_ids: Sequence[int], **fields: object) -> None:
        """The same change to many tasks, in one transaction."""
        if not task_ids:
            return
        ids = list(task_ids)
        with self.session() as session:
            for first in range(0, len(ids), 500):  # within every database's limit on bound parameters
                session.execute(update(Task).where(Task.id.in_(ids[first:first + 500])).values(**fields))

    def set_order_state(self, order_id: int, state: str) -> None:
        with self.session() as session:
            order = session.get(Order, order_id)
            if order is not None:
                order.state = state


def _public(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url

