"""Shared CLI helpers: consoles, and the error type printed as one line."""

from __future__ import annotations

from rich.console import Console

from ohem_tune.errors import OhemTuneError

console = Console()
console_err = Console(stderr=True)

# Exceptions whose message is a complete one-line explanation for the user.
UserError: tuple[type[BaseException], ...] = (OhemTuneError, FileNotFoundError)
