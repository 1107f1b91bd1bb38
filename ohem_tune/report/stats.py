"""Seed statistics for the tables: mean, sample std, n, and paired-by-seed differences with a t CI.

Student t quantiles are computed here (regularised incomplete beta + bisection) so the report
needs no scipy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof=1) of n values; std is None when n < 2."""

    mean: float | None
    std: float | None
    n: int


@dataclass(frozen=True)
class PairedDiff:
    """Mean of per-seed differences (variant - baseline) with its 95% t interval.

    `low`/`high` are None when fewer than two seeds are paired; `seeds` lists the paired seeds.
    """

    mean: float | None
    low: float | None
    high: float | None
    n: int
    seeds: tuple[int, ...]


def summarize(values: Iterable[float]) -> Summary:
    """Mean, sample std (ddof=1) and count of the finite values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Summary(None, None, 0)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(mean, None, 1)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return Summary(mean, math.sqrt(var), n)


def paired_difference(
    variant: Mapping[int, float], baseline: Mapping[int, float], confidence: float = 0.95
) -> PairedDiff:
    """Pair runs by seed (only seeds present in both), difference variant - baseline, t interval."""
    seeds = tuple(
        sorted(
            s
            for s in set(variant) & set(baseline)
            if math.isfinite(variant[s]) and math.isfinite(baseline[s])
        )
    )
    diffs = [variant[s] - baseline[s] for s in seeds]
    stats = summarize(diffs)
    if stats.n < 2 or stats.std is None or stats.mean is None:
        return PairedDiff(stats.mean, None, None, stats.n, seeds)
    half = t_quantile(0.5 + confidence / 2.0, stats.n - 1) * stats.std / math.sqrt(stats.n)
    return PairedDiff(stats.mean, stats.mean - half, stats.mean + half, stats.n, seeds)


def t_quantile(prob: float, df: float) -> float:
    """Inverse CDF of Student's t with `df` degrees of freedom (matches scipy.stats.t.ppf)."""
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    if prob == 0.5:
        return 0.0
    if prob < 0.5:
        return -t_quantile(1.0 - prob, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < prob:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < prob:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t: 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2), for t >= 0."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(0.5 * df, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (continued fraction, Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h
