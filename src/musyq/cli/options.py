"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import typer
from rich.console import Console

from musyq.errors import MusyqError
from musyq.readers import StackOptions

console = Console(stderr=True)

SensorOption = typer.Option(None, "--sensor", help="Sensor of plain band files without metadata (e.g. S2A, L8_OLI).")
DatetimeOption = typer.Option(None, "--datetime", help="Acquisition time (UTC, ISO 8601) of plain band files.")
ScaleOption = typer.Option(10000.0, "--scale", help="Plain band files: DN per unit reflectance.")
OffsetOption = typer.Option(0.0, "--offset", help="Plain band files: DN offset added before scaling.")


def stack_options(sensor: str | None, when: str | None, scale: float, offset: float) -> StackOptions | None:
    """What the user said about band files that carry no metadata."""
    if sensor is None and when is None:
        return None
    if sensor is None or when is None:
        raise MusyqError("plain band files need both --sensor and --datetime")
    try:
        acquired = datetime.fromisoformat(when.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError as exc:
        raise MusyqError(f"--datetime {when!r} is not an ISO 8601 time") from exc
    return StackOptions(sensor=sensor, acquired=acquired, scale=scale, offset=offset)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn musyq errors into one red line and exit status 1; show reader warnings in yellow."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except MusyqError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
        finally:
            for warning in caught:
                if issubclass(warning.category, UserWarning):
                    console.print(f"[yellow]warning:[/] {warning.message}", highlight=False)
