"""The one exception tree of musyq: every failure a user can cause is a ``MusyqError``."""

from __future__ import annotations

from pathlib import Path


class MusyqError(Exception):
    """Root of all errors raised on purpose by musyq."""


class InputError(MusyqError, ValueError):
    """An input file or folder is missing, unreadable or malformed; the message names it."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnknownProductError(InputError):
    """No reader recognises the input."""


class MissingBandError(InputError):
    """A processing stage needs bands the product does not have."""


class GridError(MusyqError, ValueError):
    """A tile id is unknown or a scene does not touch the requested tile."""


class SensorError(MusyqError, KeyError):
    """An unknown sensor or band was asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
