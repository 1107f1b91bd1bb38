"""The runs of a report grouped by row (variant): finished values by seed, params, exclusions."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from ohem_tune.report.layout import Layout, Variant
from ohem_tune.report.runs import INCLUDED_STATUS
from ohem_tune.report.stats import Summary, summarize

MAX_LISTED_EXCLUSIONS = 20
NO_PROTOCOL = "not recorded (run logged without the ohem_tune.test_protocol tag)"


@dataclass(frozen=True)
class Flags:
    """The M/B settings of a variant: multi-scale train, multi-scale test, iterative bbox."""

    ms_train: bool = False
    ms_test: bool = False
    bbox: bool = False

    @property
    def key(self) -> tuple[bool, bool, bool]:
        return (self.ms_train, self.ms_test, self.bbox)


def _num_scales(value: Any) -> int:
    """How many scales a logged `input.scales` / `test.scales` holds ('[480, 576]' -> 2)."""
    if value is None:
        return 1
    if isinstance(value, list | tuple):
        return len(value)
    return max(1, len(re.findall(r"\d+(?:\.\d+)?", str(value))))


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


class ReportData:
    """Runs (superseded ones dropped) indexed by the layout's variants."""

    def __init__(self, layout: Layout, runs: pd.DataFrame) -> None:
        self.layout = layout
        self.all_runs = runs
        self.runs = runs[~runs["superseded"]] if len(runs) else runs
        names = {v.name for v in layout.variants}
        self.unplaced = sorted(set(self.runs["variant"]) - names) if len(self.runs) else []
        self._groups = {
            str(name): group for name, group in self.runs.groupby("variant", sort=False)
        }
        self._finished: dict[str, pd.DataFrame] = {}

    @cached_property
    def search_runs(self) -> pd.DataFrame:
        """The Optuna search-trial runs (tag search_point), one per trial: its latest FINISHED
        run, else its latest; in start order. Empty for fixed ablation trials."""
        runs = self.all_runs
        if runs.empty or "search_point" not in runs.columns:
            return runs.iloc[0:0]
        runs = runs[runs["search_point"].notna()].copy()
        runs["_fin"] = (runs["status"] == INCLUDED_STATUS).astype(int)
        runs["_end"] = runs["end_time"].fillna(runs["start_time"])
        runs = runs.sort_values(["_fin", "_end"], ascending=[False, False], kind="stable")
        runs = runs.drop_duplicates(subset=["trial_id"], keep="first")
        return runs.drop(columns=["_fin", "_end"]).sort_values("start_time", kind="stable")

    # --- per-variant views -------------------------------------------------------------------
    def runs_of(self, variant: Variant) -> pd.DataFrame:
        """Every kept run of the variant (finished or not)."""
        return self._groups.get(variant.name, self.runs.iloc[0:0])

    def finished(self, variant: Variant) -> pd.DataFrame:
        """The variant's finished runs: the ones that enter means."""
        if variant.name not in self._finished:
            runs = self.runs_of(variant)
            self._finished[variant.name] = runs[runs["status"] == INCLUDED_STATUS]
        return self._finished[variant.name]

    def has_metric(self, column: str) -> bool:
        """True when any finished run has a value in `column`."""
        if column not in self.runs.columns:
            return False
        return bool(self.runs.loc[self.runs["status"] == INCLUDED_STATUS, column].notna().any())

    def by_seed(self, variant: Variant, column: str, runs: pd.DataFrame | None = None) -> dict:
        """Finished values of `column` keyed by seed (runs without a seed keyed by run id)."""
        runs = self.finished(variant) if runs is None else runs
        if column not in runs.columns:
            return {}
        out: dict[Any, float] = {}
        for seed, run_id, value in zip(runs["seed"], runs["run_id"], runs[column], strict=True):
            if value is not None and not pd.isna(value) and math.isfinite(float(value)):
                out[run_id if pd.isna(seed) else int(seed)] = float(value)
        return out

    def summary(self, variant: Variant, column: str, runs: pd.DataFrame | None = None) -> Summary:
        """Mean, std, n of the variant's finished values of `column`."""
        return summarize(self.by_seed(variant, column, runs).values())

    def param(self, variant: Variant, key: str) -> Any:
        """The variant's logged param (most common value over its runs), else its spec override."""
        col = f"params.{key}"
        runs = self.runs_of(variant)
        if col in runs.columns:
            values = [v for v in runs[col] if isinstance(v, str)]
            if values:
                return Counter(values).most_common(1)[0][0]
        return variant.overrides.get(key)

    def model(self, variant: Variant) -> str | None:
        """The row's trunk label: the spec's, else the runs' model tag."""
        if variant.model:
            return variant.model
        models = [m for m in self.runs_of(variant)["model"] if isinstance(m, str)]
        return Counter(models).most_common(1)[0][0] if models else None

    def sampler(self, variant: Variant) -> str | None:
        """The variant's sampler registry name (heuristic, ohem, ...)."""
        value = self.param(variant, "sampler.name")
        return None if value is None else str(value)

    def flags(self, variant: Variant) -> Flags:
        """Whether the variant trains / tests multi-scale and uses iterative bbox regression."""
        return Flags(
            ms_train=_num_scales(self.param(variant, "input.scales")) > 1,
            ms_test=_num_scales(self.param(variant, "test.scales")) > 1,
            bbox=_truthy(self.param(variant, "test.iterative_bbox")),
        )

    def baseline_for(self, variant: Variant) -> Variant | None:
        """The baseline with the same model label, else the only baseline, else None."""
        baselines = [v for v in self.layout.variants if v.baseline]
        same = [b for b in baselines if self.model(b) == self.model(variant)]
        if same:
            return same[0]
        return baselines[0] if len(baselines) == 1 else None

    # --- exclusions ----------------------------------------------------------------------------
    def excluded(self, variants: list[Variant]) -> pd.DataFrame:
        """Kept runs of these variants that did not finish (failed, pruned, killed, running)."""
        names = [v.name for v in variants]
        runs = self.runs[self.runs["variant"].isin(names)]
        return runs[runs["status"] != INCLUDED_STATUS]

    def exclusion_notes(self, variants: list[Variant]) -> list[str]:
        """A note listing the excluded runs (capped), for the lines under a table."""
        bad = self.excluded(variants)
        if bad.empty:
            return []
        items = []
        for _, run in bad.head(MAX_LISTED_EXCLUSIONS).iterrows():
            seed = "?" if pd.isna(run["seed"]) else int(run["seed"])
            error = run["error"] if isinstance(run["error"], str) and run["error"] else ""
            error = error.splitlines()[0][:100] if error else ""
            items.append(
                f"`{run['variant']}` seed {seed}: {run['status']}"
                + (f" ({error})" if error else "")
            )
        if len(bad) > MAX_LISTED_EXCLUSIONS:
            items.append(f"… and {len(bad) - MAX_LISTED_EXCLUSIONS} more (see runs.parquet)")
        plural = "s" if len(bad) != 1 else ""
        return [f"Excluded from means ({len(bad)} run{plural}): " + "; ".join(items) + "."]
