"""``python -m musyq`` runs the command line."""

from musyq.cli import app

app(prog_name="musyq")
