"""Cell formatting: mean ± std, paired deltas, ratios, learning rates; no '-0.0' in tables."""

from __future__ import annotations

from ohem_tune.report.format import delta_cell, format_lr, mean_std_cell, ratio_cell
from ohem_tune.report.stats import PairedDiff, Summary


def test_mean_std_cell_forms() -> None:
    assert mean_std_cell(Summary(0.6123, 0.0131, 3)).text == "61.2 ± 1.3"
    assert mean_std_cell(Summary(0.6123, None, 1)).text == "61.2 ± —"
    assert mean_std_cell(Summary(None, None, 0)).text == "—"
    assert mean_std_cell(Summary(0.6123, 0.0131, 3)).value == 61.2


def test_no_negative_zero() -> None:
    assert mean_std_cell(Summary(-0.0001, 0.00001, 2)).text == "0.0 ± 0.0"
    cell = delta_cell(PairedDiff(-0.0004, -0.004, 0.003, 2, (0, 1)))
    assert cell.text == "+0.0 [-0.4, +0.3] (n=2)"


def test_delta_and_ratio_cells() -> None:
    assert delta_cell(PairedDiff(0.05, None, None, 1, (0,))).text == "+5.0 (n=1)"
    assert delta_cell(PairedDiff(None, None, None, 0, ())).text == "—"
    assert ratio_cell(Summary(0.16, 0.01, 3), Summary(0.11, 0.01, 3)).text == "1.45×"
    assert ratio_cell(Summary(0.16, 0.01, 3), Summary(None, None, 0)).text == "—"


def test_format_lr_like_the_paper() -> None:
    assert [format_lr(x) for x in (0.001, 0.004, 0.003, 0.0025, 0.01)] == [
        "1e-3",
        "4e-3",
        "3e-3",
        "2.5e-3",
        "1e-2",
    ]
    assert format_lr("0.001") == "1e-3"
    assert format_lr(None) is None
