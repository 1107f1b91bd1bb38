"""`ohem-tune run` (placeholder until implemented)."""

from __future__ import annotations

import typer


def run() -> None:
    """Not implemented yet."""
    typer.echo("not implemented yet")
    raise typer.Exit(1)
