"""One doctor check's result: a row of the table (check, status, detail)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skip")


@dataclass(frozen=True)
class Row:
    """A check's name, how it came out and what it found (a failure names the fix)."""

    check: str
    status: Status
    detail: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def exit_code(rows: Iterable[Row]) -> int:
    """0 when no check failed (warnings and skips do not fail the doctor), else 1."""
    return 1 if any(row.status == "fail" for row in rows) else 0
