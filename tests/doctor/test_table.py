"""The table shows every row with its status; the closing line counts them and names failures."""

from __future__ import annotations

from rich.console import Console

from ohem_tune.doctor import Row
from ohem_tune.doctor.table import print_rows, summary_line

ROWS = [
    Row("torch", "ok", "2.x"),
    Row("GPU", "fail", "no usable GPU"),
    Row("shared storage", "skip", "local Ray"),
    Row("weights vgg16", "fail", "data/imagenet_models/vgg16.pth: not found"),
    Row("disk (checkpoints)", "warn", "low"),
]


def test_summary_counts_each_status_and_names_the_failed_checks():
    line = summary_line(ROWS)
    assert line.startswith("5 checks: 1 ok, 1 warn, 2 fail, 1 skip")
    assert line.endswith("failed: GPU, weights vgg16")
    assert "failed" not in summary_line(ROWS[:1])


def test_table_prints_one_line_per_row():
    console = Console(record=True, width=200)
    print_rows(ROWS, console)
    lines = console.export_text().splitlines()
    for row in ROWS:
        (line,) = [ln for ln in lines if f" {row.check} " in ln]
        assert row.status in line and row.detail in line
