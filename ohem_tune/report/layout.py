"""What the report shows: experiment name, rows (variants in order), the table set and claims.

It comes from the search spec when one is given (row order, labels, paper numbers, tables,
claims) and otherwise from the trial runs' tags alone (no claims then).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ohem_tune import tracking_keys as K
from ohem_tune.config import flatten
from ohem_tune.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    """One table row: a spec variant (the runs of all its seeds are aggregated)."""

    name: str
    label: str
    model: str | None = None
    baseline: bool = False
    order: int = 0
    paper_map: float | None = None  # percent
    overrides: Mapping[str, Any] = field(default_factory=dict)  # dotted config keys


@dataclass(frozen=True)
class Claim:
    """A claim of the spec (`claims:`): `variant` vs `baseline` on `metric`, judged by the report.

    margin and paper_delta are in report units (logged value x `scale`: mAP points for mAP).
    """

    label: str
    variant: str
    baseline: str
    expect: str  # better | worse | none
    metric: str = K.FINAL_MAP
    margin: float | None = None
    paper_delta: float | None = None
    higher_is_better: bool = True
    scale: float = 100.0


@dataclass(frozen=True)
class Layout:
    """The rows and tables of a report, and where they came from."""

    experiment: str
    variants: tuple[Variant, ...]
    tables: tuple[str, ...] | None  # None: every table the data supports
    spec_path: Path | None = None
    tracking_uri: str | None = None  # the spec's tracking.uri, if it sets one
    search_keys: tuple[str, ...] = ()  # the Optuna-sampled config keys, in the spec's order
    search_metric: str = "eval/mAP"  # what the search optimised, and in which direction
    search_mode: str = "max"
    claims: tuple[Claim, ...] = ()  # the spec's claims (none without a spec)


def is_spec_path(source: str) -> bool:
    """True when the CLI argument names a YAML file rather than an experiment."""
    return source.endswith((".yaml", ".yml")) or Path(source).is_file()


def _percent(value: float | None) -> float | None:
    """The paper's mAP in percent; values in [0, 1] are taken as fractions."""
    if value is None:
        return None
    return value * 100.0 if 0.0 <= value <= 1.0 else float(value)


def layout_from_spec(path: str | Path, experiment: str | None = None) -> Layout:
    """Rows, order, labels, paper numbers and tables from a search spec YAML.

    The experiment is `experiment`, else the spec's tracking.experiment, else its name. Tables are
    the spec's report.tables when it sets them, else every table the data supports.
    """
    from ohem_tune.spec import load_spec

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: spec file not found; pass a spec YAML or an experiment name")
    spec = load_spec(path)
    variants = tuple(
        Variant(
            name=v.name,
            label=v.label or v.name,
            model=v.model,
            baseline=v.baseline,
            order=i,
            paper_map=_percent(v.paper),
            overrides=flatten(v.set),
        )
        for i, v in enumerate(spec.variants)
    )
    explicit = "report" in spec.model_fields_set and "tables" in spec.report.model_fields_set
    tables = tuple(dict.fromkeys(spec.report.tables)) if explicit else None
    name = experiment or spec.tracking.experiment or spec.name
    search = spec.search
    claims = tuple(
        Claim(
            label=c.label,
            variant=c.variant,
            baseline=c.baseline,
            expect=c.expect,
            metric=c.metric,
            margin=c.margin,
            paper_delta=c.paper_delta,
            higher_is_better=c.higher_better,
            scale=c.scale,
        )
        for c in spec.claims
    )
    return Layout(
        name,
        variants,
        tables,
        path,
        spec.tracking.uri,
        search_keys=tuple(search.params) if search else (),
        search_metric=search.metric if search else "eval/mAP",
        search_mode=search.mode if search else "max",
        claims=claims,
    )


def layout_from_runs(experiment: str, runs: pd.DataFrame) -> Layout:
    """Rows from the runs' tags: one per variant, ordered by the variant_order tag then name."""
    if runs.empty:
        return Layout(experiment, (), None)
    first = runs.sort_values(["variant_order", "variant"], na_position="last", kind="stable")
    variants = []
    for i, (name, group) in enumerate(first.groupby("variant", sort=False)):
        row = group.iloc[0]
        paper = group["paper_map"].dropna()
        variants.append(
            Variant(
                name=str(name),
                label=str(row["label"]) if isinstance(row["label"], str) else str(name),
                model=row["model"] if isinstance(row["model"], str) else None,
                baseline=bool(group["baseline"].any()),
                order=i,
                paper_map=float(paper.iloc[0])
                if len(paper) and math.isfinite(paper.iloc[0])
                else None,
            )
        )
    val = any(f"metrics.{k}" in runs.columns for k in (K.FINAL_VAL_MAP, K.VAL_MAP))
    return Layout(
        experiment,
        tuple(variants),
        None,
        search_keys=_search_keys(runs),
        search_metric=K.VAL_MAP if val else K.MAP,  # a search that logged val selected on it
    )


def _search_keys(runs: pd.DataFrame) -> tuple[str, ...]:
    """The sampled keys found in the runs' search points, sorted (the spec's order is unknown)."""
    keys: set[str] = set()
    for raw in runs["search_point"].dropna():
        keys.update(json.loads(raw))
    return tuple(sorted(keys))
