"""``python -m vidgen`` runs the CLI."""

from vidgen.cli.main import run

run()
