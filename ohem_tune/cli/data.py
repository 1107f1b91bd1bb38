"""`ohem-tune data`: generate and inspect datasets (placeholder until implemented)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Generate (synth) and inspect datasets.", no_args_is_help=True)


@app.command("synth")
def synth() -> None:
    """Not implemented yet."""
    raise typer.Exit(1)


@app.command("inspect")
def inspect() -> None:
    """Not implemented yet."""
    raise typer.Exit(1)
