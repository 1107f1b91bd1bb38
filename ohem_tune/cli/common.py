"""Shared CLI helpers: consoles, and the error type printed as one line."""

from __future__ import annotations

from rich.console import Console

from ohem_tune.errors import OhemTuneError

# soft_wrap: long lines (commands, paths, trial names) stay whole, so they can be copied
console = Console(soft_wrap=True)
console_err = Console(stderr=True, soft_wrap=True)

# Exceptions whose message is a complete one-line explanation for the user.
UserError: tuple[type[BaseException], ...] = (OhemTuneError, FileNotFoundError)
