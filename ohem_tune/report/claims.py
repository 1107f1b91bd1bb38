"""The claims table: each spec claim's paired-by-seed Δ with its 95% t interval, a verdict
(reproduced / contradicted / unresolved), the seeds an unresolved claim would need, and a flag
when a cell's seeds spread more than the claim's effect."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ohem_tune import tracking_keys as K
from ohem_tune.report.data import ReportData
from ohem_tune.report.layout import Claim, Variant
from ohem_tune.report.stats import PairedDiff, paired_difference, summarize, t_quantile
from ohem_tune.report.table import MISSING, Cell, Column, Table, text_cell
from ohem_tune.report.tables import add_measured_note, metric_name

CONFIDENCE = 0.95
SEEDS_CAP = 1000
REPRODUCED, CONTRADICTED, UNRESOLVED = "reproduced", "contradicted", "unresolved"
NO_EFFECT = "inside ±margin: no effect of the size that counts"
SMALL_EFFECT = "on the expected side of 0, but inside ±margin: smaller than the effect that counts"
METRIC_LABELS = {K.FINAL_MAP_AREA: "AP (all-pt)", K.FINAL_LOSS_PER_ROI_ALL: "loss per RoI"}


@dataclass(frozen=True)
class ClaimResult:
    """A judged claim in report units: the paired Δ, the sd of the paired differences, the
    verdict, why it is unresolved, and the seeds it would need (text as the table shows it)."""

    diff: PairedDiff
    sd: float | None
    verdict: str
    reason: str
    seeds_needed: int | None
    seeds_text: str


def half_width(sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half the Student-t interval of a mean of n paired differences with sample sd `sd`."""
    return t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)


def seeds_for(sd: float, target: float, cap: int = SEEDS_CAP) -> int | None:
    """The smallest n >= 2 with t(0.975, n-1) * sd / sqrt(n) < target; None when no n <= cap."""
    if target <= 0:
        return None
    if sd == 0:
        return 2
    if half_width(sd, cap) >= target:
        return None
    lo, hi = 2, cap  # half_width decreases in n: bisect for the first n below target
    while lo < hi:
        mid = (lo + hi) // 2
        if half_width(sd, mid) < target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _verdict(low: float, high: float, expect: str, margin: float | None, higher: bool) -> str:
    """Verdict from the interval [low, high] of variant - baseline."""
    if expect == "none":
        m = float(margin or 0.0)
        if -m <= low and high <= m:
            return REPRODUCED
        return CONTRADICTED if low > m or high < -m else UNRESOLVED
    gain_low, gain_high = (low, high) if higher else (-high, -low)  # > 0: variant better
    if expect == "worse":
        gain_low, gain_high = -gain_high, -gain_low
    if gain_low > 0:
        return REPRODUCED
    if gain_high < 0 or _inside(low, high, margin):
        return CONTRADICTED
    return UNRESOLVED


def _inside(low: float, high: float, margin: float | None) -> bool:
    """Whether a better / worse claim's interval lies inside ±margin: no effect of that size."""
    return margin is not None and -margin <= low and high <= margin


def judge(
    variant: Mapping[int, float],
    baseline: Mapping[int, float],
    expect: str,
    margin: float | None = None,
    higher_is_better: bool = True,
    cap: int = SEEDS_CAP,
) -> ClaimResult:
    """Judge a claim on values by seed (report units): pair by seed, Δ = variant - baseline.

    better / worse: reproduced when the 95% interval lies wholly on the expected side of 0,
    contradicted when wholly on the other side or, with a margin (the smallest effect that
    counts), inside [-margin, margin]. none: reproduced when it lies inside [-margin, margin],
    contradicted when wholly outside. Anything else, or n < 2: unresolved.
    """
    if expect == "none" and margin is None:
        raise ValueError("expect 'none' needs a margin")
    diff = paired_difference(variant, baseline, CONFIDENCE)
    sd = summarize(variant[s] - baseline[s] for s in diff.seeds).std
    if diff.low is None or diff.high is None or diff.mean is None or sd is None:
        return ClaimResult(diff, sd, UNRESOLVED, "n < 2", None, f"{MISSING} (n < 2)")
    verdict = _verdict(diff.low, diff.high, expect, margin, higher_is_better)
    if verdict != UNRESOLVED:
        reason = ""
        if expect != "none" and _inside(diff.low, diff.high, margin):
            wrong_side = _verdict(diff.low, diff.high, expect, None, higher_is_better)
            if verdict == REPRODUCED:
                reason = SMALL_EFFECT
            elif wrong_side != CONTRADICTED:
                reason = NO_EFFECT
        return ClaimResult(diff, sd, verdict, reason, None, MISSING)
    size = abs(diff.mean)
    if expect == "none":
        m = float(margin)  # type: ignore[arg-type]
        target, never = abs(m - size), "never (|Δ| = margin)"
        reason = "interval straddles the margin"
        needed = seeds_for(sd, target, cap)
    else:
        # either side of 0 resolves it, or (with a margin) landing inside ±margin
        targets = [size] + ([margin - size] if margin is not None and size < margin else [])
        found = [n for n in (seeds_for(sd, t, cap) for t in targets) if n is not None]
        target, needed = max(targets), min(found, default=None)
        never = "never (Δ = 0)"
        reason = "interval straddles 0" + (" and the margin" if margin is not None else "")
    if needed is None:
        text = never if target <= 0 else f"> {cap}"
    else:
        text = str(needed)
    return ClaimResult(diff, sd, UNRESOLVED, reason, needed, text)


def spread_flag(cells: Sequence[Sequence[float]], effect: float, what: str, digits: int) -> str:
    """'spread 4.0 > |Δ| 3.0' when a cell's seeds span (max - min) more than `effect`, else ''."""
    spread = max((max(c) - min(c) for c in cells if len(c)), default=0.0)
    if spread > effect:
        return f"spread {spread:.{digits}f} > {what} {effect:.{digits}f}"
    return ""


def _signed(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{round(value, digits) + 0.0:+.{digits}f}"


def _delta_text(diff: PairedDiff, digits: int) -> str:
    if diff.n == 0 or diff.mean is None:
        return MISSING
    text = _signed(diff.mean, digits)
    if diff.low is not None and diff.high is not None:
        text += f" [{_signed(diff.low, digits)}, {_signed(diff.high, digits)}]"
    return text


def _expected(claim: Claim) -> str:
    if claim.expect == "none":
        return f"|Δ| ≤ {claim.margin:g}"
    up = (claim.expect == "better") == claim.higher_is_better  # Δ expected above 0
    text = "Δ > 0" if up else "Δ < 0"
    if claim.margin is not None:
        text += f", not inside ±{claim.margin:g}"
    return text + ("" if claim.higher_is_better else " (lower is better)")


def _verdict_text(result: ClaimResult, claim: Claim) -> str:
    if result.reason in (NO_EFFECT, SMALL_EFFECT):
        return f"{result.verdict} (inside ±{claim.margin:g})"
    return result.verdict


def _metric_label(claim: Claim, data: ReportData) -> str:
    if claim.metric == K.FINAL_MAP:
        return metric_name(data)[0]
    return METRIC_LABELS.get(claim.metric, claim.metric)


def claims_table(data: ReportData) -> Table:
    """One row per spec claim: metric, expectation, paper Δ, this run's Δ [95% CI], n, verdict,
    seeds needed and the spread flag; notes say how each is computed and what was measured."""
    table = Table(
        key="claims",
        title="Claims: the paper's statements and what these runs say",
        caption=(
            f"Claims of experiment `{data.layout.experiment}` (the spec's `claims:`): the paired "
            "difference variant − baseline over seeds, its 95% interval, and the verdict."
        ),
        columns=[
            Column("Claim", "l"),
            Column("Metric", "l"),
            Column("Expected", "l"),
            Column("paper Δ"),
            Column("Δ [95% CI]"),
            Column("n"),
            Column("Verdict", "l"),
            Column("Seeds needed"),
            Column("Flag", "l"),
        ],
    )
    by_name = {v.name: v for v in data.layout.variants}
    involved: list[Variant] = []
    compared: list[str] = []
    for claim in data.layout.claims:
        digits = 1 if claim.scale == 100.0 else 3
        variant, baseline = by_name.get(claim.variant), by_name.get(claim.baseline)
        values = [
            {s: x * claim.scale for s, x in data.by_seed(v, f"metrics.{claim.metric}").items()}
            if v is not None
            else {}
            for v in (variant, baseline)
        ]
        involved += [v for v in (variant, baseline) if v is not None and v not in involved]
        compared.append(f"{claim.label} = `{claim.variant}` − `{claim.baseline}`")
        result = judge(values[0], values[1], claim.expect, claim.margin, claim.higher_is_better)
        flag = ""
        if result.diff.mean is not None:
            effect, what = (
                (float(claim.margin), "margin")  # type: ignore[arg-type]
                if claim.expect == "none"
                else (abs(result.diff.mean), "|Δ|")
            )
            flag = spread_flag([list(v.values()) for v in values], effect, what, digits)
        table.add_row(
            [
                text_cell(claim.label),
                text_cell(_metric_label(claim, data)),
                text_cell(_expected(claim)),
                Cell(_signed(claim.paper_delta, digits)),
                Cell(_delta_text(result.diff, digits)),
                Cell(str(result.diff.n)),
                Cell(_verdict_text(result, claim)),
                Cell(result.seeds_text),
                Cell(flag),
            ]
        )
    table.notes += [
        "Δ: variant − baseline for every seed both finished (n pairs), mean and 95% Student-t "
        "interval mean ± t(0.975, n−1)·sd/√n; mAP in points, other metrics in their logged units. "
        "paper Δ: the same difference in the paper (the spec's `paper_delta`).",
        "Verdict: better / worse (for a loss, better is lower): reproduced when the whole "
        "interval lies on the expected side of 0, contradicted when it lies wholly on the other "
        "side, or, for a claim with a margin (the smallest effect that counts, below the paper's "
        "|Δ|), when it lies inside ±margin (shown as 'contradicted (inside ±m)': no effect of "
        "that size; an interval on the expected side of 0 and inside ±margin reads 'reproduced "
        "(inside ±m)': real, but smaller than the effect that counts); none: reproduced when the "
        "interval lies inside ±margin, contradicted when it lies entirely outside; otherwise, or "
        "with n < 2, unresolved.",
        "Seeds needed (unresolved claims): the smallest n with t(0.975, n−1)·sd/√n below |Δ| "
        "(better / worse; with a margin, or below the margin minus |Δ| if that needs fewer), or "
        "below the distance between |Δ| and the margin (none), taking the observed mean Δ and sd "
        "of the paired differences as the truth: a planning figure, not a promise; "
        f"'> {SEEDS_CAP}' beyond {SEEDS_CAP}.",
        "Flag: a cell (variant or baseline) whose finished seeds span (max − min) more than the "
        "claim's effect |Δ| (better / worse) or its margin (none).",
    ]
    if compared:
        table.notes.append("Rows compared: " + "; ".join(compared) + ".")
    add_measured_note(table, data, involved)
    table.notes += data.exclusion_notes(involved)
    return table
