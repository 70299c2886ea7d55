"""``python -m musyq`` runs the command line."""

from musyq.cli import main

main()
