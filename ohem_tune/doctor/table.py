"""The doctor's table (check, status, detail) and the closing line naming the failed checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from ohem_tune.doctor.rows import STATUSES, Row

STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def build_table(rows: Sequence[Row], title: str = "ohem-tune doctor") -> Table:
    """A rich table with one line per row, its status coloured."""
    table = Table("check", "status", "detail", title=title, title_justify="left")
    for row in rows:
        table.add_row(row.check, f"[{STYLES[row.status]}]{row.status}[/]", row.detail)
    return table


def summary_line(rows: Sequence[Row]) -> str:
    """'N checks: a ok, b warn, c fail, d skip' and, when any failed, which."""
    counts = Counter(row.status for row in rows)
    line = f"{len(rows)} checks: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES)
    failed = [row.check for row in rows if row.status == "fail"]
    if failed:
        line += f"; failed: {', '.join(failed)}"
    return line


def print_rows(rows: Sequence[Row], console: Console, title: str = "ohem-tune doctor") -> None:
    """Print the table and the summary line."""
    console.print(build_table(rows, title))
    failed = any(row.status == "fail" for row in rows)
    style = "bold red" if failed else "green"
    console.print(summary_line(rows), style=style, highlight=False, markup=False)
