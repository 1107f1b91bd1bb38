"""`ohem-tune evaluate` (placeholder until implemented)."""

from __future__ import annotations

import typer


def evaluate() -> None:
    """Not implemented yet."""
    typer.echo("not implemented yet")
    raise typer.Exit(1)
