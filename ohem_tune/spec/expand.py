"""Expansion of a spec into trials: base <- profile <- variant <- grid point <- --set, validated."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ohem_tune import tracking_keys as tk
from ohem_tune.config import (
    Config,
    ConfigError,
    build_config,
    deep_merge,
    flatten,
    parse_overrides,
    read_yaml,
)
from ohem_tune.config.errors import suggest
from ohem_tune.config.model import Backbone
from ohem_tune.spec.schema import ResourcesSpec, seed_list

if TYPE_CHECKING:
    from ohem_tune.spec.schema import Spec, Variant


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a variant (plus grid point) at one seed, with its validated config."""

    trial_id: str  # config hash (seed excluded) + seed: the resume identity
    variant: str
    variant_order: int
    seed: int
    config: Config  # resolved and validated; train.seed == seed
    config_hash: str  # hash of the config with train.seed zeroed: shared by all seeds of a row
    resources: ResourcesSpec
    profile: str | None
    label: str
    model_label: str
    baseline: bool
    paper: float | None
    point: dict[str, Any] = field(default_factory=dict)  # grid values applied (dotted keys)

    @property
    def tags(self) -> dict[str, str]:
        """MLflow tags describing the trial's place in the table (tracking_keys names)."""
        tags = {
            tk.TAG_ROLE: "trial",
            tk.TAG_TRIAL_ID: self.trial_id,
            tk.TAG_CONFIG_HASH: self.config_hash,
            tk.TAG_VARIANT: self.variant,
            tk.TAG_VARIANT_ORDER: str(self.variant_order),
            tk.TAG_SEED: str(self.seed),
            tk.TAG_LABEL: self.label,
            tk.TAG_MODEL_LABEL: self.model_label,
            tk.TAG_BASELINE: "true" if self.baseline else "false",
            tk.TAG_PROFILE: self.profile or "",
        }
        if self.paper is not None:
            tags[tk.TAG_PAPER_MAP] = f"{self.paper:g}"
        return tags


# Fields that say where or how fast a trial runs, not what it computes: not part of its identity.
PLACE_FIELDS = (
    "dataset.synthetic.cache_dir",
    "dataset.proposals.cache_dir",
    "dataset.num_workers",
    "train.device",
    "train.num_threads",
    "train.checkpoint_period",
    "train.keep_checkpoints",
    "test.batch_images",
)


def config_identity(cfg: Config) -> str:
    """Hash of a resolved config without its seed and place fields (the seed is the other half
    of a trial id; PLACE_FIELDS may differ between the machines that resume a trial)."""
    tree = cfg.model_dump(mode="json")
    tree["train"]["seed"] = 0
    for dotted in PLACE_FIELDS:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]


def trial_id_for(cfg: Config) -> tuple[str, str]:
    """(config_hash, trial_id) of a resolved config; its train.seed is the trial's seed."""
    config_hash = config_identity(cfg)
    return config_hash, f"{config_hash}-s{cfg.train.seed}"


def dotted_tree(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{'solver.lr': 1e-3, 'model': {'fc_dim': 256}} -> nested dict (later keys merge in)."""
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        node: Any = value
        for part in reversed(str(key).split(".")):
            node = {part: node}
        tree = deep_merge(tree, node)
    return tree


def base_tree(spec: Spec) -> dict[str, Any]:
    """The spec's base train config as a nested mapping (a path is read relative to the spec)."""
    if isinstance(spec.base, dict):
        return dotted_tree(spec.base)
    path = Path(spec.base)
    if not path.is_absolute() and spec.source_path is not None:
        path = spec.source_path.parent / path
    return read_yaml(path)


def pick_profile(spec: Spec, profile: str | None) -> str | None:
    """The profile to use: the one asked for, else the spec's default (errors name the choices)."""
    chosen = profile if profile is not None else spec.default_profile
    if chosen is not None and chosen not in spec.profiles:
        raise ConfigError(
            f"{spec.where}: profile '{chosen}' is not defined{suggest(chosen, spec.profiles)}; "
            f"choose one of: {', '.join(spec.profiles) or '(the spec defines none)'}"
        )
    return chosen


def resources_for(spec: Spec, profile: str | None) -> ResourcesSpec:
    """The spec's resources with the profile's overrides applied."""
    merged = spec.resources.model_dump()
    if profile is not None:
        merged.update(spec.profiles[profile].resources.model_dump(exclude_none=True))
    return ResourcesSpec.model_validate(merged)


def seeds_for(spec: Spec, profile: str | None, seeds: int | Sequence[int] | None) -> list[int]:
    """Seeds from the CLI, else the profile, else the spec."""
    if seeds is not None:
        value: int | list[int] = seeds if isinstance(seeds, int) else list(seeds)
    elif profile is not None and spec.profiles[profile].seeds is not None:
        value = spec.profiles[profile].seeds  # type: ignore[assignment]
    else:
        value = spec.seeds
    from ohem_tune.spec.schema import check_seeds

    try:
        return seed_list(check_seeds(value))
    except ValueError as exc:
        raise ConfigError(f"{spec.where}: seeds: {exc}") from None


def variant_tree(
    spec: Spec,
    variant: Variant,
    profile: str | None,
    point: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """The unvalidated nested config of one variant: base <- profile <- variant <- point <- --set.

    The profile's backbone_map then swaps paper trunks for their stand-ins at that scale.
    """
    tree = base_tree(spec)
    prof = spec.profiles[profile] if profile is not None else None
    if prof is not None:
        tree = deep_merge(tree, dotted_tree(prof.set))
    tree = deep_merge(tree, dotted_tree(variant.set))
    if profile is not None and profile in variant.by_profile:
        tree = deep_merge(tree, dotted_tree(variant.by_profile[profile]))
    if point:
        tree = deep_merge(tree, dotted_tree(point))
    if prof is not None and prof.scale:
        tree = _scaled(tree, prof.scale, spec, profile)
    if overrides:
        tree = deep_merge(tree, parse_overrides(overrides))
    if prof is not None and prof.backbone_map:
        backbone = (
            tree.get("model", {}).get("backbone") if isinstance(tree.get("model"), dict) else None
        )
        if backbone in prof.backbone_map:
            tree = deep_merge(tree, {"model": {"backbone": prof.backbone_map[backbone]}})
    return tree


def _scaled(
    tree: dict[str, Any], factors: Mapping[str, float], spec: Spec, profile: str | None
) -> dict[str, Any]:
    """Multiply the dotted numeric fields named in `factors` (defaults come from Config)."""
    defaults = Config().flat()
    current = {**defaults, **flatten(tree)}
    updates: dict[str, Any] = {}
    for key, factor in factors.items():
        value = current.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"{spec.where}: profiles.{profile}.scale.{key}: not a numeric config field"
                f"{suggest(key, [k for k, v in defaults.items() if isinstance(v, int | float)])}"
            )
        scaled = value * factor
        updates[key] = int(round(scaled)) if isinstance(value, int) else scaled
    return deep_merge(tree, dotted_tree(updates))


def check_backbone_maps(spec: Spec) -> None:
    """Every backbone_map key and value must be a known trunk."""
    known = get_args(Backbone)
    for name, prof in spec.profiles.items():
        for src, dst in prof.backbone_map.items():
            for value in (src, dst):
                if value not in known:
                    raise ConfigError(
                        f"{spec.where}: profiles.{name}.backbone_map: unknown trunk '{value}'"
                        f"{suggest(value, known)}; known: {', '.join(known)}"
                    )


def check_search(spec: Spec, cfg: Config, where: str, profile: str | None) -> None:
    """Search keys must be config fields that accept their values; conditions must name fields."""
    search = spec.search_for(profile)
    if search is None:
        return
    flat = cfg.flat()
    seen: set[str] = set()
    for key, param in search.params.items():
        if key not in flat:
            raise ConfigError(
                f"{spec.where}: search.params.{key}: not a config field{suggest(key, flat)}"
            )
        for cond in param.when or {}:
            if cond not in flat and cond not in seen:
                raise ConfigError(
                    f"{spec.where}: search.params.{key}.when: '{cond}' is neither a config field "
                    f"nor an earlier search parameter{suggest(cond, list(flat) + list(seen))}"
                )
        for value in param.sample_values():
            build_config(deep_merge(cfg.model_dump(mode="json"), dotted_tree({key: value})), where)
        seen.add(key)
    for key in search.grid:
        if key not in flat:
            raise ConfigError(
                f"{spec.where}: search.grid.{key}: not a config field{suggest(key, flat)}"
            )


def check_scheduler(spec: Spec, cfg: Config, where: str) -> None:
    """ASHA decides at evaluations: it needs train.eval_period > 0 and a reported metric."""
    sched = spec.scheduler
    if sched.type == "none":
        return
    if cfg.train.eval_period <= 0:
        raise ConfigError(
            f"{where}: train.eval_period: is 0 but scheduler '{sched.type}' decides on "
            f"{sched.metric} at evaluations; set train.eval_period (e.g. {sched.grace_period})"
        )
    if not sched.metric.startswith(("eval/", "train/")):
        raise ConfigError(
            f"{spec.where}: scheduler.metric: '{sched.metric}' is not reported during training; "
            "use an eval/* or train/* key such as eval/mAP"
        )


def check_selection_split(spec: Spec, cfg: Config, where: str, profile: str | None) -> None:
    """Searchers and schedulers select on the val split: a metric measured on test is refused
    unless search.allow_test_selection; a val metric needs train.eval_split: val."""
    search = spec.search_for(profile)
    selectors = []
    if search is not None and search.uses_optuna:
        selectors.append(("search.metric", search.metric))
    if spec.scheduler.type != "none":
        selectors.append(("scheduler.metric", spec.scheduler.metric))
    allowed = search is not None and search.allow_test_selection
    for field_name, metric in selectors:
        group, _, name = metric.partition("/")
        if group not in ("eval", "final"):
            continue  # train/* metrics are measured on no evaluation split
        on_val = name.startswith(tk.VAL_GROUP)
        if on_val and cfg.train.eval_split != "val":
            raise ConfigError(
                f"{where}: train.eval_split: is '{cfg.train.eval_split}' but {field_name} "
                f"'{metric}' is measured on the val split; set train.eval_split: val"
            )
        if on_val:
            continue
        if not allowed:
            raise ConfigError(
                f"{spec.where}: {field_name}: '{metric}' selects on the test split; select on "
                f"validation ({field_name}: eval/{tk.VAL_GROUP}{name} with train.eval_split: val "
                "and dataset.val_split), or set search.allow_test_selection: true to select on "
                "test knowingly"
            )
        if cfg.train.eval_split == "val":
            raise ConfigError(
                f"{where}: train.eval_split: is 'val', so {field_name} '{metric}' (the test "
                f"split) is measured only at the end; select on eval/{tk.VAL_GROUP}{name}, or set "
                "train.eval_split: test"
            )


def expand(
    spec: Spec,
    profile: str | None = None,
    seeds: int | Sequence[int] | None = None,
    overrides: Sequence[str] = (),
) -> list[TrialSpec]:
    """All fixed trials (variants x grid points x seeds), each config validated before any work.

    With Optuna `search.params`, these are the templates Optuna samples on top of.
    """
    chosen = pick_profile(spec, profile)
    check_backbone_maps(spec)
    resources = resources_for(spec, chosen)
    seed_values = seeds_for(spec, chosen, seeds)
    search = spec.search_for(chosen)
    if search is not None and search.uses_optuna and len(seed_values) > 1:
        raise ConfigError(
            f"{spec.where}: seeds: an Optuna search runs one seed per sample, got "
            f"{len(seed_values)} seeds; use seeds: 1 (re-run the best config with more seeds)"
        )
    if (
        search is not None
        and search.uses_optuna
        and spec.scheduler.type != "none"
        and spec.scheduler.metric != search.metric
    ):
        raise ConfigError(
            f"{spec.where}: scheduler.metric: '{spec.scheduler.metric}' differs from "
            f"search.metric '{search.metric}'; Optuna and ASHA must decide on the same metric"
        )
    points = search.grid_points() if search is not None else [{}]
    trials: list[TrialSpec] = []
    for order, variant in enumerate(spec.variants):
        for point in points:
            where = f"{spec.where}: variant '{variant.name}'"
            if chosen is not None:
                where += f" (profile '{chosen}')"
            if point:
                where += " at " + ", ".join(f"{k}={v}" for k, v in point.items())
            tree = variant_tree(spec, variant, chosen, point, overrides)
            cfg = build_config(tree, where)
            if cfg.train.max_iter < 1:
                raise ConfigError(f"{where}: train.max_iter: must be >= 1")
            check_scheduler(spec, cfg, where)
            check_search(spec, cfg, where, chosen)
            check_selection_split(spec, cfg, where, chosen)
            name = variant.name
            if point:
                name += "@" + ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items())
            for seed in seed_values:
                seeded = cfg.model_copy(deep=True)
                seeded.train.seed = seed
                config_hash, trial_id = trial_id_for(seeded)
                trials.append(
                    TrialSpec(
                        trial_id=trial_id,
                        variant=name,
                        variant_order=order,
                        seed=seed,
                        config=seeded,
                        config_hash=config_hash,
                        resources=resources,
                        profile=chosen,
                        label=variant.label or variant.name,
                        model_label=variant.model or seeded.model.backbone,
                        baseline=variant.baseline,
                        paper=variant.paper,
                        point=dict(point),
                    )
                )
    _check_unique(spec, trials)
    return trials


def _check_unique(spec: Spec, trials: list[TrialSpec]) -> None:
    """Two rows resolving to the same config would share a trial id (and be run once)."""
    first: dict[str, str] = {}
    for trial in trials:
        other = first.setdefault(trial.trial_id, trial.variant)
        if other != trial.variant:
            raise ConfigError(
                f"{spec.where}: variants '{other}' and '{trial.variant}' resolve to the same "
                "config; make them differ or drop one"
            )
