"""Claim verdicts on hand-built paired data, seeds needed, spread flags, and the claims table
built from the known runs of the MLflow store (tests/report/mlflow_store.py)."""

from __future__ import annotations

import math
import statistics

import pytest

from ohem_tune.report import ReportResult
from ohem_tune.report.claims import (
    CONTRADICTED,
    NO_EFFECT,
    REPRODUCED,
    SMALL_EFFECT,
    UNRESOLVED,
    judge,
    seeds_for,
    spread_flag,
)

# t(0.975, df) from a printed Student-t table
T = {
    2: 4.302653,
    3: 3.182446,
    4: 2.776445,
    5: 2.570582,
    6: 2.446912,
    16: 2.119905,
    17: 2.109816,
    62: 1.998972,
    63: 1.998341,
}


def paired(diffs: list[float], base: float = 50.0) -> tuple[dict[int, float], dict[int, float]]:
    """(variant, baseline) by seed whose per-seed differences are `diffs`."""
    baseline = {s: base + s for s in range(len(diffs))}
    return {s: baseline[s] + d for s, d in enumerate(diffs)}, baseline


def test_better_and_worse_reproduced_contradicted_unresolved() -> None:
    up = paired([5.0, 6.0, 4.0])  # mean 5, sd 1: 95% CI 5 ± 4.303 / sqrt(3) = [2.52, 7.48]
    result = judge(*up, "better")
    assert result.verdict == REPRODUCED and result.seeds_needed is None
    assert result.diff.n == 3 and result.diff.mean == pytest.approx(5.0)
    assert result.diff.low == pytest.approx(5 - T[2] / math.sqrt(3), abs=1e-6)
    assert judge(*up, "worse").verdict == CONTRADICTED
    down = paired([-5.0, -6.0, -4.0])
    assert judge(*down, "worse").verdict == REPRODUCED
    assert judge(*down, "better").verdict == CONTRADICTED
    straddle = paired([1.0, -1.0, 3.0])  # mean 1, sd 2: CI [-3.97, +5.97]
    for expect in ("better", "worse"):
        result = judge(*straddle, expect)
        assert result.verdict == UNRESOLVED and result.reason == "interval straddles 0"


def test_lower_is_better_metric_flips_the_direction() -> None:
    lower = paired([-0.20, -0.18, -0.16], base=1.0)  # the variant's loss is lower
    assert judge(*lower, "better", higher_is_better=False).verdict == REPRODUCED
    assert judge(*lower, "worse", higher_is_better=False).verdict == CONTRADICTED
    assert judge(*lower, "better", higher_is_better=True).verdict == CONTRADICTED


def test_none_inside_outside_and_straddling_its_margin() -> None:
    data = paired([5.0, 6.0, 4.0])  # CI [2.52, 7.48]
    assert judge(*data, "none", margin=10.0).verdict == REPRODUCED  # inside [-10, 10]
    assert judge(*data, "none", margin=1.0).verdict == CONTRADICTED  # entirely above +1
    assert judge(*paired([-5.0, -6.0, -4.0]), "none", margin=1.0).verdict == CONTRADICTED
    straddling = judge(*data, "none", margin=6.0)  # 7.48 > 6 > 2.52
    assert straddling.verdict == UNRESOLVED
    assert straddling.reason == "interval straddles the margin"
    with pytest.raises(ValueError, match="needs a margin"):
        judge(*data, "none")


def test_better_with_a_margin_is_contradicted_inside_it() -> None:
    """A margin on better / worse is the smallest effect that counts: an interval inside ±margin
    contradicts the claim; one on the expected side of 0 still reproduces it."""
    flat = paired([0.2, -0.1, 0.3, 0.0])  # mean 0.1, CI [-0.19, +0.39]
    assert judge(*flat, "better").verdict == UNRESOLVED  # no margin: straddles 0
    for expect in ("better", "worse"):
        inside = judge(*flat, expect, margin=1.0)
        assert (inside.verdict, inside.reason) == (CONTRADICTED, NO_EFFECT)
    wide = judge(*flat, "better", margin=0.3)  # +0.39 > 0.3
    assert (wide.verdict, wide.reason) == (UNRESOLVED, "interval straddles 0 and the margin")
    small_but_real = paired([0.4, 0.5, 0.6])  # CI [+0.25, +0.75], inside ±1 but above 0
    small = judge(*small_but_real, "better", margin=1.0)
    assert (small.verdict, small.reason) == (REPRODUCED, SMALL_EFFECT)
    assert judge(*paired([0.4, 0.5, 0.6]), "better", margin=0.5).reason == ""  # beyond +0.5
    assert judge(*small_but_real, "worse", margin=1.0).verdict == CONTRADICTED
    assert judge(*small_but_real, "worse", margin=1.0).reason == ""  # wholly on the wrong side
    lower = paired([-0.02, 0.01, 0.0, 0.01], base=1.0)  # a loss, flat
    assert judge(*lower, "better", margin=0.1, higher_is_better=False).verdict == CONTRADICTED


def test_table_cells_name_the_margin() -> None:
    from ohem_tune.report.claims import _expected, _verdict_text
    from ohem_tune.report.layout import Claim

    sized = Claim("c", "b", "a", "better", margin=1.0, paper_delta=2.4)
    assert _expected(sized) == "Δ > 0, not inside ±1"
    flat = judge(*paired([0.2, -0.1, 0.3, 0.0]), "better", margin=1.0)
    assert _verdict_text(flat, sized) == "contradicted (inside ±1)"
    below = judge(*paired([-5.0, -6.0, -4.0]), "better", margin=1.0)
    assert _verdict_text(below, sized) == "contradicted"  # wholly below 0, not "no effect"
    small = judge(*paired([0.4, 0.5, 0.6]), "better", margin=1.0)
    assert _verdict_text(small, sized) == "reproduced (inside ±1)"
    clear = judge(*paired([5.0, 6.0, 4.0]), "better", margin=1.0)
    assert _verdict_text(clear, sized) == "reproduced"


def test_fewer_than_two_pairs_is_unresolved() -> None:
    one = judge({0: 60.0}, {0: 50.0}, "better")
    assert (one.verdict, one.seeds_text, one.diff.n) == (UNRESOLVED, "— (n < 2)", 1)
    assert one.diff.mean == pytest.approx(10.0)
    none_shared = judge({0: 1.0, 1: 2.0}, {2: 0.0, 3: 1.0}, "none", margin=1.0)
    assert (none_shared.verdict, none_shared.diff.n, none_shared.diff.mean) == (UNRESOLVED, 0, None)


def test_seeds_needed_computed_by_hand() -> None:
    # better, mean 1, sd 2: need t(n-1) * 2 / sqrt(n) < 1, i.e. t(n-1) / sqrt(n) < 0.5.
    assert T[16] / math.sqrt(17) > 0.5 > T[17] / math.sqrt(18)
    result = judge(*paired([1.0, -1.0, 3.0]), "better")
    assert (result.seeds_needed, result.seeds_text) == (18, "18")
    # none, mean 5, sd 1, margin 6: need t(n-1) / sqrt(n) < 6 - 5 = 1.
    assert T[5] / math.sqrt(6) > 1.0 > T[6] / math.sqrt(7)
    assert judge(*paired([5.0, 6.0, 4.0]), "none", margin=6.0).seeds_needed == 7
    # none, mean 2 > margin 1, sd 2: resolves (contradicted) once t(n-1) * 2 / sqrt(n) < 2 - 1.
    beyond = judge(*paired([2.0, 0.0, 4.0]), "none", margin=1.0)
    assert beyond.verdict == UNRESOLVED and beyond.seeds_needed == 18
    # better with margin 1.5, mean 1, sd 2: inside ±1.5 needs t(n-1) * 2 / sqrt(n) < 0.5
    # (n = 64), beyond 0 needs it below 1 (n = 18): the fewer wins.
    assert T[62] / math.sqrt(63) > 0.25 > T[63] / math.sqrt(64)
    sized = judge(*paired([1.0, -1.0, 3.0]), "better", margin=1.5)
    assert (sized.seeds_needed, sized.seeds_text) == (18, "18")
    # mean 0.5, sd 2, margin 3: beyond 0 needs t/sqrt(n) < 0.25 (64), inside ±3 needs < 1.25.
    assert T[3] / math.sqrt(4) > 1.25 > T[4] / math.sqrt(5)
    assert judge(*paired([0.5, -1.5, 2.5]), "better", margin=3.0).seeds_needed == 5


def test_seeds_needed_never_and_capped() -> None:
    zero = judge(*paired([1.0, -1.0]), "better")  # mean 0: no n separates it from 0
    assert (zero.seeds_needed, zero.seeds_text) == (None, "never (Δ = 0)")
    at_margin = judge(*paired([0.0, 2.0]), "none", margin=1.0)  # |mean| = margin
    assert at_margin.seeds_text == "never (|Δ| = margin)"
    tiny = judge(*paired([0.01, -1.0, 1.01]), "better")  # mean 0.0067, sd ~1
    assert (tiny.seeds_needed, tiny.seeds_text) == (None, "> 1000")
    assert seeds_for(sd=0.0, target=0.5) == 2
    assert seeds_for(sd=1.0, target=0.0) is None


@pytest.mark.parametrize(("mean", "sd", "expect", "margin"), [
    (1.0, 2.0, "better", None), (-0.7, 1.5, "worse", None), (0.3, 0.5, "none", 1.0),
    (1.6, 0.8, "none", 1.0), (0.2, 1.4, "better", 1.0), (-0.1, 1.5, "worse", 1.0),
])  # fmt: skip
def test_seeds_needed_is_where_the_verdict_resolves(mean, sd, expect, margin) -> None:
    """With n pairs of the observed mean and sd the claim resolves; with n - 1 it does not."""

    def pairs(n: int) -> list[float]:
        z = [i - (n - 1) / 2 for i in range(n)]
        scale = statistics.stdev(z)
        return [mean + sd * v / scale for v in z]

    needed = judge(*paired(pairs(3)), expect, margin).seeds_needed
    assert needed is not None and needed > 3
    assert judge(*paired(pairs(needed)), expect, margin).verdict != UNRESOLVED
    assert judge(*paired(pairs(needed - 1)), expect, margin).verdict == UNRESOLVED


def test_spread_flag() -> None:
    assert spread_flag([[50.0, 54.0], [55.0, 58.0]], 5.0, "|Δ|", 1) == ""
    assert spread_flag([[50.0, 54.0], [55.0, 58.0]], 3.0, "|Δ|", 1) == "spread 4.0 > |Δ| 3.0"
    assert spread_flag([[50.0], []], 0.5, "margin", 1) == ""  # one seed spans nothing


# --- the claims table from the known runs ------------------------------------------------------


def _claim_rows(built: ReportResult) -> dict[str, dict[str, str]]:
    table = next(t for t in built.tables if t.key == "claims")
    headers = [c.header for c in table.columns]
    return {
        row[0].text: {h: c.text for h, c in zip(headers, row, strict=True)} for row in table.rows
    }


def test_claims_table_from_the_store(built: ReportResult) -> None:
    assert built.tables[0].key == "claims"  # first: what a reader checks before the evidence
    rows = _claim_rows(built)
    half = T[2] * 1.0 / math.sqrt(3)  # ohem_vggm - frcn_vggm: +5, +6, +4 points
    ci = f"+5.0 [{5 - half:+.1f}, {5 + half:+.1f}]"
    beats = rows["OHEM beats FRCN (VGGM)"]
    assert beats == {
        "Claim": "OHEM beats FRCN (VGGM)", "Metric": "07 mAP", "Expected": "Δ > 0",
        "paper Δ": "+2.4", "Δ [95% CI]": ci, "n": "3", "Verdict": "reproduced",
        "Seeds needed": "—", "Flag": "",
    }  # fmt: skip
    assert rows["OHEM is below FRCN (VGGM)"]["Verdict"] == "contradicted"
    within1 = rows["OHEM within 1 of FRCN (VGGM)"]
    assert (within1["Expected"], within1["Verdict"]) == ("|Δ| ≤ 1", "contradicted")
    assert within1["Flag"] == "spread 4.0 > margin 1.0"  # frcn_vggm seeds: 50, 52, 54
    assert rows["OHEM within 10 of FRCN (VGGM)"]["Verdict"] == "reproduced"
    within6 = rows["OHEM within 6 of FRCN (VGGM)"]
    assert (within6["Verdict"], within6["Seeds needed"]) == ("unresolved", "7")
    vgg16 = rows["OHEM beats FRCN (VGG16)"]  # ohem_vgg16 finished seed 0 only
    assert (vgg16["Δ [95% CI]"], vgg16["n"], vgg16["Verdict"]) == ("+5.0", "1", "unresolved")
    assert vgg16["Seeds needed"] == "— (n < 2)"
    no_runs = rows["Removing bg_lo hurts FRCN (VGGM)"]
    assert (no_runs["Δ [95% CI]"], no_runs["n"], no_runs["Verdict"]) == ("—", "0", "unresolved")


def test_loss_claim_lower_is_better(built: ReportResult) -> None:
    from tests.report.mlflow_store import loss_value

    row = _claim_rows(built)["OHEM has lower loss per RoI (VGGM)"]
    diffs = [loss_value("ohem_vggm", s, 20) - loss_value("frcn_vggm", s, 20) for s in (0, 1, 2)]
    mean = statistics.mean(diffs)
    half = T[2] * statistics.stdev(diffs) / math.sqrt(3)
    assert row["Metric"] == "loss per RoI" and row["Expected"] == "Δ < 0 (lower is better)"
    assert row["Δ [95% CI]"] == f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"
    assert (row["Verdict"], row["paper Δ"]) == ("reproduced", "—")


def test_claims_in_every_format(built: ReportResult) -> None:
    md = (built.out_dir / "table_claims.md").read_text(encoding="utf-8")
    assert "| OHEM beats FRCN (VGGM) | 07 mAP | Δ > 0 | +2.4 |" in md
    assert "Rows compared: OHEM beats FRCN (VGGM) = `ohem_vggm` − `frcn_vggm`" in md
    assert "### Claims" in (built.out_dir / "README.md").read_text(encoding="utf-8")
    tex = (built.out_dir / "table_claims.tex").read_text(encoding="utf-8")
    assert r"\resizebox{\linewidth}{!}{%" in tex  # long cells: scaled to the text width
    assert r"|$\Delta$| $\leq$ 1" in tex
    assert r"\input{table_claims.tex}" in (built.out_dir / "report.tex").read_text()


def test_no_claims_no_table(store: str, tmp_path) -> None:
    from ohem_tune.report import build_report
    from tests.report.mlflow_store import EXPERIMENT, write_spec

    spec = write_spec(tmp_path / "spec.yaml", tables=["ablation"], claims=[])
    assert [t.key for t in build_report(str(spec), store, out=tmp_path, formats="md").tables] == [
        "ablation"
    ]
    tags_only = build_report(EXPERIMENT, store, out=tmp_path / "tags", formats="md")
    assert "claims" not in [t.key for t in tags_only.tables]
