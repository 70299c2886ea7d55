"""The ``musyq`` command: one module per subcommand. The console entry imports only the module of the command
it runs (``musyq order list`` needs none of the ARD stage, which takes seconds to import); ``app`` holds all."""

from __future__ import annotations

import sys
from importlib import import_module

import typer

COMMANDS = ("info", "ard", "mask", "coregister", "demo", "cube", "composite", "reconstruct", "gapfill", "product",
            "validate", "serve", "simulate", "crosscal")  # each module's function of the same name
GROUPS = ("lut", "bandpass", "cloudmodel", "order", "learn")  # each module's ``app``


def _root() -> None:
    """Level-1 satellite data to consistent analysis-ready tiles, time series, composites and products."""


def build(only: str | None = None) -> typer.Typer:
    """The command line with every subcommand, or with ``only`` one."""
    app = typer.Typer(name="musyq", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    app.callback()(_root)  # a group even when it holds one command, so the command keeps its name
    for name in COMMANDS:
        if only in (None, name):
            app.command(name)(getattr(import_module(f"musyq.cli.{name}"), name))
    for name in GROUPS:
        if only in (None, name):
            app.add_typer(import_module(f"musyq.cli.{name}").app, name=name)
    return app


def main() -> None:
    wanted = sys.argv[1] if len(sys.argv) > 1 else None
    build(wanted if wanted in COMMANDS + GROUPS else None)()


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        return build()
    raise AttributeError(name)
