"""The search-space spec schema: base config, profiles, variants (ablation rows), seeds, search,
scheduler, resources, tracking, report layout and the claims the report checks."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from ohem_tune import tracking_keys as K
from ohem_tune.config.base import Section
from ohem_tune.spec.search import SearchSpec

if TYPE_CHECKING:
    from ohem_tune.spec.expand import TrialSpec

TableName = Literal[
    "search", "ablation", "multiscale_bbox", "cost", "per_class", "coco", "loss_curve"
]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ResourcesSpec(Section):
    """Per-trial resources (fractions allowed: gpu 0.5 packs two trials per GPU)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    max_concurrent: int | None = Field(None, ge=1, description="cap on trials running at once")

    @field_validator("gpu")
    @classmethod
    def _gpu_packing(cls, value: float) -> float:
        if value > 1:  # the trainer runs on one device (cuda:0 of what Ray makes visible)
            raise ValueError(
                f"a trial trains on one GPU, got {value}; use gpu: 1, or a fraction such as "
                "0.5 to pack trials on a GPU"
            )
        return value


class ResourcesOverride(Section):
    """A profile's partial override of the spec's resources."""

    cpu: float | None = Field(None, gt=0)
    gpu: float | None = Field(None, ge=0)
    max_concurrent: int | None = Field(None, ge=1)


class Profile(Section):
    """Named overrides for scale and place (e.g. `local`: synthetic data, small trunks, CPU)."""

    description: str = ""
    set: dict[str, Any] = Field(default_factory=dict, description="dotted config overrides")
    backbone_map: dict[str, str] = Field(
        default_factory=dict, description="paper trunk -> stand-in trunk at this scale"
    )
    scale: dict[str, float] = Field(
        default_factory=dict,
        description="multiply numeric fields of every variant, e.g. {solver.lr: 10}: keeps the "
        "paper's ratios between rows while moving the whole table to this scale",
    )
    resources: ResourcesOverride = ResourcesOverride()
    seeds: int | list[int] | None = None


class Variant(Section):
    """One ablation row: a partial override of the base config plus its table layout."""

    name: str
    label: str | None = Field(None, description="the table's 'Experiment' column")
    model: str | None = Field(None, description="the table's 'Model' column (paper trunk name)")
    baseline: bool = False
    paper: float | None = Field(None, description="the paper's VOC07 mAP for this row")
    description: str = ""
    set: dict[str, Any] = Field(default_factory=dict, description="dotted config overrides")
    by_profile: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="extra dotted overrides for a given profile"
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"variant name {value!r}: use letters, digits, '_', '-', '.'")
        return value


class SchedulerSpec(Section):
    """Early stopping: none, or ASHA on a metric at evaluations (every `train.eval_period`)."""

    type: Literal["none", "asha"] = "none"
    metric: str = "eval/mAP"
    mode: Literal["max", "min"] = "max"
    grace_period: int = Field(100, ge=1, description="iterations before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1.0)
    max_t: int | None = Field(None, ge=1, description="None: train.max_iter")
    brackets: int = Field(1, ge=1)

    def grace_at_evaluations(self, eval_period: int) -> int:
        """grace_period raised to a multiple of train.eval_period: ASHA sees the metric only at
        evaluations, so a smaller grace (or one between two) puts its rungs where no trial reports
        (the paper profiles evaluate every 5000 iterations; the specs' grace is the local 100)."""
        if eval_period <= 0:
            return self.grace_period
        return -(-self.grace_period // eval_period) * eval_period


class TrackingSpec(Section):
    """Where MLflow runs go: URI (default: sqlite:///<cwd>/mlflow.db) and experiment name."""

    uri: str | None = None
    experiment: str | None = None


class ReportSpec(Section):
    """Which tables and figures `ohem-tune report` builds for this spec."""

    tables: list[TableName] = Field(default_factory=lambda: ["ablation", "cost", "loss_curve"])


# Claim metrics with a known direction and display scale: mAP / AP are logged in [0, 1] and
# claimed in points (x100); losses, times and memory in their own units, lower is better.
CLAIM_METRICS: dict[str, tuple[bool, float]] = {
    K.FINAL_MAP: (True, 100.0),
    K.FINAL_MAP_AREA: (True, 100.0),
    K.FINAL_VAL_MAP: (True, 100.0),
    K.FINAL_LOSS_PER_ROI_ALL: (False, 1.0),
    K.FINAL_SEC_PER_ITER: (False, 1.0),
    K.FINAL_PEAK_MEM_GB: (False, 1.0),
    K.FINAL_TRAIN_SECONDS: (False, 1.0),
}
CLAIM_METRIC_PREFIXES: dict[str, tuple[bool, float]] = {
    K.FINAL_AP_PREFIX: (True, 100.0),
    K.FINAL_COCO_PREFIX: (True, 100.0),
}


def claim_metric_info(metric: str) -> tuple[bool, float] | None:
    """(higher is better, display scale) of a known claim metric, else None."""
    if metric in CLAIM_METRICS:
        return CLAIM_METRICS[metric]
    for prefix, info in CLAIM_METRIC_PREFIXES.items():
        if metric.startswith(prefix) and len(metric) > len(prefix):
            return info
    return None


class Claim(Section):
    """A claim the report judges: `variant` vs `baseline` on `metric`, paired by seed.

    `expect: better` / `worse` is the direction that is good / bad for the metric (for a loss,
    better is lower); `none` claims no effect beyond `margin`. On better / worse, `margin` is the
    smallest effect that counts: an interval inside ±margin contradicts the claim (no effect of
    that size), so it must be below the paper's |Δ|. margin and paper_delta are in the report's
    units: mAP points for mAP/AP metrics, the metric's own units otherwise.
    """

    label: str = Field(min_length=1, description="the claims table's row name")
    variant: str
    baseline: str
    expect: Literal["better", "worse", "none"]
    margin: float | None = Field(
        None,
        gt=0,
        description="none: the equivalence margin; better / worse: the smallest effect that counts",
    )
    paper_delta: float | None = Field(None, description="the paper's variant - baseline")
    metric: str = K.FINAL_MAP
    higher_is_better: bool | None = Field(
        None, description="the metric's direction; None: known for final/mAP, losses, ..."
    )

    @model_validator(mode="after")
    def _complete(self) -> Claim:
        if self.expect == "none" and self.margin is None:
            raise ValueError(
                "margin: required with expect: none (the equivalence margin); add e.g. margin: 1.0"
            )
        if (
            self.expect != "none"
            and self.margin is not None
            and self.paper_delta is not None
            and self.margin >= abs(self.paper_delta)
        ):
            raise ValueError(
                f"margin: {self.margin:g} is not below the paper's |Δ| {abs(self.paper_delta):g}; "
                f"an effect inside ±margin could not contradict expect: {self.expect}; lower the "
                "margin or remove it"
            )
        if self.higher_is_better is None and claim_metric_info(self.metric) is None:
            known = ", ".join([*CLAIM_METRICS, *(f"{p}<name>" for p in CLAIM_METRIC_PREFIXES)])
            raise ValueError(
                f"metric: '{self.metric}' has no known direction; set higher_is_better: true or "
                f"false, or use one of {known}"
            )
        return self

    @property
    def higher_better(self) -> bool:
        """Whether a larger value of the metric is better."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        info = claim_metric_info(self.metric)
        return True if info is None else info[0]

    @property
    def scale(self) -> float:
        """Logged value -> report units (x100 for mAP / AP, which claims state in points)."""
        info = claim_metric_info(self.metric)
        return 1.0 if info is None else info[1]


class Spec(Section):
    """A whole search-space / ablation spec, as written in search_spaces/*.yaml."""

    name: str
    description: str = ""
    base: str | dict[str, Any] = Field(
        default_factory=dict, description="train config path (relative to the spec) or mapping"
    )
    default_profile: str | None = None
    profiles: dict[str, Profile] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=lambda: [Variant(name="default")])
    seeds: int | list[int] = 1
    search: SearchSpec | None = None
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    max_failures: int = Field(1, ge=0, description="retries of a raising trial (from checkpoint)")
    report_every: int | None = Field(
        None, ge=1, description="report to Ray Tune every K iterations (None: train.log_period)"
    )
    hooks: list[str] = Field(
        default_factory=list, description="extra trainer hooks, 'package.module:ClassName'"
    )
    tracking: TrackingSpec = TrackingSpec()
    report: ReportSpec = ReportSpec()
    claims: list[Claim] = Field(
        default_factory=list, description="the paper's claims, judged in the report's claims table"
    )

    _source_path: Path | None = PrivateAttr(None)

    @property
    def source_path(self) -> Path | None:
        """The YAML file this spec was loaded from (None for an in-memory spec)."""
        return self._source_path

    @property
    def where(self) -> str:
        """How error messages name this spec: its file, or its name."""
        return str(self._source_path) if self._source_path is not None else f"spec '{self.name}'"

    def spec_hash(self) -> str:
        """A short stable hash of the whole spec as validated."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def expand(
        self,
        profile: str | None = None,
        seeds: int | Sequence[int] | None = None,
        overrides: Sequence[str] = (),
    ) -> list[TrialSpec]:
        """Variants x grid points x seeds as validated trials (see `ohem_tune.spec.expand`)."""
        from ohem_tune.spec.expand import expand

        return expand(self, profile, seeds, overrides)

    def search_for(self, profile: str | None) -> SearchSpec | None:
        """The search with the profile's `scale` factors applied to its ranges and grids."""
        if self.search is None or profile is None or not self.profiles[profile].scale:
            return self.search
        factors = self.profiles[profile].scale
        params = {}
        for key, param in self.search.params.items():
            factor = factors.get(key)
            if factor is None:
                params[key] = param
            elif param.type == "categorical":
                choices = [c * factor if _numeric(c) else c for c in param.choices or []]
                params[key] = param.model_copy(update={"choices": choices})
            else:
                low, high = param.low * factor, param.high * factor  # type: ignore[operator]
                if param.type == "int":
                    low, high = round(low), round(high)
                params[key] = param.model_copy(update={"low": low, "high": high})
        grid = {
            k: [v * factors[k] if _numeric(v) else v for v in values] if k in factors else values
            for k, values in self.search.grid.items()
        }
        return self.search.model_copy(update={"params": params, "grid": grid})

    def variant(self, name: str) -> Variant:
        """The variant called `name` (ConfigError with a did-you-mean otherwise)."""
        from ohem_tune.config.errors import suggest
        from ohem_tune.errors import ConfigError

        for variant in self.variants:
            if variant.name == name:
                return variant
        names = [v.name for v in self.variants]
        raise ConfigError(
            f"{self.where}: no variant '{name}'{suggest(name, names)}; have: {', '.join(names)}"
        )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"spec name {value!r}: use letters, digits, '_', '-', '.'")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, value: int | list[int]) -> int | list[int]:
        return check_seeds(value)

    @field_validator("hooks")
    @classmethod
    def _hooks_ok(cls, value: list[str]) -> list[str]:
        for item in value:
            if ":" not in item:
                raise ValueError(f"hook {item!r}: write it as 'package.module:ClassName'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        if not self.variants:
            raise ValueError("variants: needs at least one variant")
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variants: duplicate name '{dupes[0]}'; names must be unique")
        if self.default_profile is not None and self.default_profile not in self.profiles:
            raise ValueError(
                f"default_profile '{self.default_profile}' is not among profiles "
                f"({', '.join(self.profiles) or 'none defined'})"
            )
        for variant in self.variants:
            for prof in variant.by_profile:
                if prof not in self.profiles:
                    raise ValueError(
                        f"variants.{variant.name}.by_profile: unknown profile '{prof}' "
                        f"({', '.join(self.profiles) or 'none defined'})"
                    )
        for name, profile in self.profiles.items():
            if profile.seeds is not None:
                try:
                    check_seeds(profile.seeds)
                except ValueError as exc:
                    raise ValueError(f"profiles.{name}.seeds: {exc}") from None
        self._check_claims(names)
        return self

    def _check_claims(self, names: list[str]) -> None:
        """Claims name existing, distinct variants and have distinct labels."""
        from ohem_tune.config.errors import suggest

        labels = [c.label for c in self.claims]
        for claim in self.claims:
            where = f"claims[{claim.label}]"
            if labels.count(claim.label) > 1:
                raise ValueError(f"{where}.label: duplicate label; claim labels must be unique")
            for field in ("variant", "baseline"):
                value = getattr(claim, field)
                if value not in names:
                    raise ValueError(
                        f"{where}.{field}: no variant '{value}'{suggest(value, names)}; name one "
                        f"of the spec's variants: {', '.join(names)}"
                    )
            if claim.variant == claim.baseline:
                raise ValueError(
                    f"{where}.baseline: is the claim's variant '{claim.variant}' itself; "
                    "compare against another variant"
                )


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_seeds(value: int | list[int]) -> int | list[int]:
    """Seeds are a count K >= 1 (seeds 0..K-1) or an explicit list of distinct ints >= 0."""
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"seeds must be >= 1, got {value}")
        return value
    if not value or any(s < 0 for s in value) or len(set(value)) != len(value):
        raise ValueError(f"seeds must be a non-empty list of distinct ints >= 0, got {value}")
    return value


def seed_list(value: int | list[int]) -> list[int]:
    """The explicit seed list for a count or a list."""
    return list(range(value)) if isinstance(value, int) else list(value)
