"""Search-space declarations: Optuna-style distributions (with conditions) and grids.

Pure data: the orchestration layer turns these into an Optuna define-by-run space; grids are
expanded into fixed trials by `Spec.expand`.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import Field, model_validator

from ohem_tune.config.base import Section

ParamValue = float | int | str | bool | list[int] | list[float] | None


class SearchParam(Section):
    """One searched config field (dotted key): a float/int range or a categorical choice."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[ParamValue] | None = None
    when: dict[str, Any] | None = Field(
        None,
        description="sample only when these dotted fields (config or earlier params) have these "
        "values; a list means 'any of'",
    )

    @model_validator(mode="after")
    def _shape(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter takes 'choices', not low/high")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("'step' and 'log: true' cannot be combined (Optuna forbids it)")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int parameter needs integer low/high")
        return self

    def sample_values(self) -> list[Any]:
        """A few representative values (bounds or choices), used to validate the config field."""
        if self.type == "categorical":
            return list(self.choices or [])
        values = [self.low, self.high]
        return [int(v) for v in values] if self.type == "int" else values

    def active(self, point: dict[str, Any]) -> bool:
        """Whether the `when` condition holds for a flat view of config + earlier params."""
        for key, wanted in (self.when or {}).items():
            options = wanted if isinstance(wanted, list) else [wanted]
            if point.get(key) not in options:
                return False
        return True

    def describe(self) -> str:
        """Short human form, e.g. 'log[1e-4, 1e-2]' or '{64, 128}'."""
        if self.type == "categorical":
            body = "{" + ", ".join(str(c) for c in self.choices or []) + "}"
        else:
            body = f"{'log' if self.log else ''}[{self.low:g}, {self.high:g}]"
            if self.step is not None:
                body += f" step {self.step:g}"
        if self.when:
            body += " if " + ", ".join(f"{k}={v}" for k, v in self.when.items())
        return body


class SearchSpec(Section):
    """Optuna distributions (`params`, sampled `num_samples` times) and/or a cartesian `grid`."""

    params: dict[str, SearchParam] = Field(default_factory=dict)
    grid: dict[str, list[ParamValue]] = Field(default_factory=dict)
    num_samples: int = Field(8, ge=1, description="Optuna trials in all (over every template)")
    metric: str = Field(
        "eval/val/mAP", description="what Optuna ranks on: the val split's mAP by default"
    )
    mode: Literal["max", "min"] = "max"
    seed: int = Field(0, ge=0, description="Optuna sampler seed (TPE)")
    allow_test_selection: bool = Field(
        False,
        description="let search.metric / scheduler.metric select on the test split; refused "
        "otherwise (searches select on dataset.val_split: eval/val/* with train.eval_split: val)",
    )

    @model_validator(mode="after")
    def _grid_non_empty(self) -> SearchSpec:
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid {key}: needs at least one value")
        overlap = set(self.grid) & set(self.params)
        if overlap:
            raise ValueError(f"{sorted(overlap)[0]} is both in grid and params; keep one")
        return self

    @property
    def uses_optuna(self) -> bool:
        """True when distributions are sampled by Optuna at run time."""
        return bool(self.params)

    def grid_points(self) -> list[dict[str, Any]]:
        """The cartesian product of the grid as flat dotted dicts ([{}] when there is no grid)."""
        if not self.grid:
            return [{}]
        keys = list(self.grid)
        return [
            dict(zip(keys, combo, strict=True)) for combo in itertools.product(*self.grid.values())
        ]
