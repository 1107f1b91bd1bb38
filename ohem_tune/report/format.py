"""Number formatting shared by the tables (unicode; the LaTeX renderer maps ±, —, Δ)."""

from __future__ import annotations

import math
from typing import Any

from ohem_tune.report.stats import PairedDiff, Summary
from ohem_tune.report.table import MISSING, Cell


def _shown(value: float, digits: int) -> float:
    """`value` rounded for display, with -0.0 made 0.0 (no '-0.0' or '+-0.0' in tables)."""
    return round(value, digits) + 0.0


def mean_std_cell(stats: Summary, scale: float = 100.0, digits: int = 1) -> Cell:
    """'61.2 ± 1.3' (n >= 2), '61.2 ± —' (n = 1), '—' (n = 0); value = displayed mean."""
    if stats.n == 0 or stats.mean is None:
        return Cell(MISSING)
    mean = _shown(stats.mean * scale, digits)
    std = MISSING if stats.std is None else f"{_shown(stats.std * scale, digits):.{digits}f}"
    return Cell(f"{mean:.{digits}f} ± {std}", mean)


def mean_cell(stats: Summary, scale: float = 100.0, digits: int = 1) -> Cell:
    """The mean alone, '—' when there is no value."""
    if stats.n == 0 or stats.mean is None:
        return Cell(MISSING)
    mean = _shown(stats.mean * scale, digits)
    return Cell(f"{mean:.{digits}f}", mean)


def number_cell(value: float | None, digits: int = 1) -> Cell:
    """A single number (e.g. the paper's), '—' when absent."""
    if value is None or not math.isfinite(value):
        return Cell(MISSING)
    shown = _shown(value, digits)
    return Cell(f"{shown:.{digits}f}", shown)


def delta_cell(diff: PairedDiff, scale: float = 100.0, digits: int = 1) -> Cell:
    """'+2.3 [+0.9, +3.7] (n=3)': paired mean difference, its 95% t interval and the pairs."""
    if diff.n == 0 or diff.mean is None:
        return Cell(MISSING)
    mean = _shown(diff.mean * scale, digits)
    text = f"{mean:+.{digits}f}"
    if diff.low is not None and diff.high is not None:
        low, high = _shown(diff.low * scale, digits), _shown(diff.high * scale, digits)
        text += f" [{low:+.{digits}f}, {high:+.{digits}f}]"
    return Cell(f"{text} (n={diff.n})", mean)


def ratio_cell(numerator: Summary, denominator: Summary, digits: int = 2) -> Cell:
    """Ratio of means as '1.62×', '—' when either side is missing."""
    if not numerator.n or not denominator.n or not denominator.mean:
        return Cell(MISSING)
    ratio = _shown(numerator.mean / denominator.mean, digits)  # type: ignore[operator]
    return Cell(f"{ratio:.{digits}f}×", ratio)


def format_lr(value: Any) -> str | None:
    """0.001 -> '1e-3', 0.004 -> '4e-3', 0.0025 -> '2.5e-3' (the paper writes 10^-3)."""
    try:
        lr = float(value)
    except (TypeError, ValueError):
        return None if value is None else str(value)
    if lr == 0:
        return "0"
    exponent = math.floor(math.log10(abs(lr)))
    mantissa = round(lr / 10**exponent, 6)
    return f"{mantissa:g}e{exponent}"


def format_number(value: Any) -> str | None:
    """An int/float param as written by people: '2', '0.1', '0'."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:g}"
