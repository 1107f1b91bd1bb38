"""GitHub-flavoured Markdown rendering of a `Table` (pipe table, bold best, notes below)."""

from __future__ import annotations

from ohem_tune.report.table import Cell, Table

_ALIGN = {"l": ":---", "c": ":---:", "r": "---:"}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


def _cell(cell: Cell) -> str:
    text = _escape(cell.text)
    return f"**{text}**" if cell.bold else text


def table_to_markdown(table: Table, heading_level: int = 3) -> str:
    """The table as Markdown: a heading, the caption, the pipe table, then its notes."""
    lines = [f"{'#' * heading_level} {table.title}", "", table.caption, ""]
    lines.append("| " + " | ".join(_escape(c.header) for c in table.columns) + " |")
    lines.append("| " + " | ".join(_ALIGN[c.align] for c in table.columns) + " |")
    for row in table.rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    notes = [f"Warning: {w}." for w in table.warnings] + table.notes
    if notes:
        lines.append("")
        lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines) + "\n"
