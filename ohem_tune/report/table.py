"""A format-neutral table: cells hold unicode text plus a rank value; rendered to MD or LaTeX."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MISSING = "—"


@dataclass(frozen=True)
class Column:
    """A column header, its alignment and which direction is best (None: not ranked)."""

    header: str
    align: Literal["l", "c", "r"] = "r"
    better: Literal["high", "low"] | None = None


@dataclass
class Cell:
    """Display text (unicode: ±, —, Δ) and the displayed number used to pick the column's best."""

    text: str = MISSING
    value: float | None = None
    bold: bool = False


@dataclass
class Table:
    """One paper-style table: `key` names its files (table_<key>.md / .tex)."""

    key: str
    title: str
    caption: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    group_starts: set[int] = field(default_factory=set)  # rows that open a new block (\midrule)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown first, also printed by the CLI

    def add_row(self, cells: list[Cell], new_group: bool = False) -> None:
        """Append a row; `new_group` draws a rule above it in LaTeX."""
        if len(cells) != len(self.columns):
            raise ValueError(
                f"row has {len(cells)} cells, table {self.key} has {len(self.columns)}"
            )
        if new_group and self.rows:
            self.group_starts.add(len(self.rows))
        self.rows.append(cells)

    def mark_best(self) -> None:
        """Bold the best displayed value of every ranked column (ties are all bold)."""
        for j, col in enumerate(self.columns):
            if col.better is None:
                continue
            values = [row[j].value for row in self.rows if row[j].value is not None]
            if not values:
                continue
            best = max(values) if col.better == "high" else min(values)
            for row in self.rows:
                row[j].bold = row[j].value is not None and row[j].value == best


def text_cell(text: object) -> Cell:
    """An unranked cell; None becomes the missing marker."""
    return Cell(MISSING if text is None or text == "" else str(text))
