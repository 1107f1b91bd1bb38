"""Seed statistics: t quantiles without scipy, sample std, paired-by-seed differences."""

from __future__ import annotations

import math
import statistics

import pytest

from ohem_tune.report.stats import paired_difference, summarize, t_cdf, t_quantile

# t_{0.975, df} from a printed Student-t table (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 30: 2.042}


@pytest.mark.parametrize("df,expected", sorted(T_975.items()))
def test_t_quantile_matches_printed_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_tends_to_normal_and_is_symmetric() -> None:
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)
    assert t_quantile(0.025, 4) == pytest.approx(-t_quantile(0.975, 4))
    assert t_quantile(0.5, 3) == 0.0
    assert t_quantile(0.995, 7) == pytest.approx(3.499, abs=5e-4)


def test_t_cdf_inverts_quantile() -> None:
    for df in (1, 2.5, 8, 50):
        for p in (0.6, 0.9, 0.975, 0.999):
            assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-9)


def test_t_quantile_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_quantile(0.9, 0)


def test_summarize_sample_std_and_n() -> None:
    values = [0.50, 0.52, 0.54, 0.61]
    s = summarize(values)
    assert s.n == 4
    assert s.mean == pytest.approx(statistics.mean(values))
    assert s.std == pytest.approx(statistics.stdev(values))  # ddof = 1


def test_summarize_single_and_empty_and_nan() -> None:
    one = summarize([0.7, math.nan])
    assert (one.mean, one.std, one.n) == (0.7, None, 1)
    none = summarize([])
    assert (none.mean, none.std, none.n) == (None, None, 0)


def test_paired_difference_uses_only_common_seeds() -> None:
    variant = {0: 0.55, 1: 0.58, 2: 0.58, 7: 0.99}
    baseline = {0: 0.50, 1: 0.52, 2: 0.54, 5: 0.10}
    d = paired_difference(variant, baseline)
    diffs = [0.05, 0.06, 0.04]
    half = 4.302653 * statistics.stdev(diffs) / math.sqrt(3)
    assert d.seeds == (0, 1, 2)
    assert d.n == 3
    assert d.mean == pytest.approx(0.05)
    assert d.low == pytest.approx(0.05 - half, abs=1e-6)
    assert d.high == pytest.approx(0.05 + half, abs=1e-6)


def test_paired_difference_single_pair_has_no_interval() -> None:
    d = paired_difference({0: 0.65, 1: 0.7}, {0: 0.60})
    assert d.n == 1
    assert d.mean == pytest.approx(0.05)
    assert d.low is None and d.high is None


def test_paired_difference_without_common_seeds_is_empty() -> None:
    d = paired_difference({1: 0.6}, {0: 0.5})
    assert d.n == 0 and d.mean is None
