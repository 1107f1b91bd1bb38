"""The whole config tree, YAML loading, dotted overrides, flattening and hashing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ohem_tune.config.base import Section
from ohem_tune.config.dataset import DatasetConfig, InputConfig
from ohem_tune.config.errors import ConfigError, format_validation_error, suggest
from ohem_tune.config.model import ModelConfig
from ohem_tune.config.sampler import SamplerConfig
from ohem_tune.config.solver import SolverConfig
from ohem_tune.config.test import TestConfig
from ohem_tune.config.train import TrainConfig


class Config(Section):
    """Everything one training run needs; flows YAML -> Config -> builders -> trainer."""

    dataset: DatasetConfig = DatasetConfig()
    input: InputConfig = InputConfig()
    model: ModelConfig = ModelConfig()
    sampler: SamplerConfig = SamplerConfig()
    solver: SolverConfig = SolverConfig()
    train: TrainConfig = TrainConfig()
    test: TestConfig = TestConfig()

    def flat(self) -> dict[str, Any]:
        """Dotted-key view of the config (lists and paths as strings), e.g. for MLflow params."""
        return flatten(self.model_dump(mode="json"))

    def hash(self) -> str:
        """A short stable hash of the resolved config (the trial identity, with the seed)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def to_yaml(self) -> str:
        """The resolved config as YAML, loadable by load_config."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def model_field_index(model: type[BaseModel] = Config, prefix: str = "") -> dict[str, set[str]]:
    """Dotted parent path -> allowed keys, for 'unknown key' messages."""
    index: dict[str, set[str]] = {prefix: set(model.model_fields)}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            index.update(model_field_index(ann, f"{prefix}.{name}" if prefix else name))
    return index


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge update into a copy of base (update wins; mappings merge)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def unflatten(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}; nested mapping values are merged."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: '{part}' is not a section")
        node[parts[-1]] = value
    return out


def parse_overrides(items: Sequence[str], source: str = "--set") -> dict[str, Any]:
    """Parse ['solver.lr=0.003', 'test.scales=[480,600]'] into a nested dict (YAML values)."""
    dotted: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected KEY=VALUE, e.g. solver.lr=0.003")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"{source} {item!r}: empty key; expected KEY=VALUE")
        try:
            dotted[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} {key}: value {raw!r} is not valid YAML ({exc})") from None
    return unflatten(dotted)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """safe_load a YAML mapping, with one-line errors for missing files and syntax errors."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found; pass the path of a YAML config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}:{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def build_config(tree: Mapping[str, Any], source: str | Path | None = None) -> Config:
    """Validate a nested mapping into a Config, raising a one-line ConfigError on bad input."""
    unknown = [k for k in tree if k not in Config.model_fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"{source + ': ' if source else ''}{key}: unknown section"
            f"{suggest(key, Config.model_fields)}; allowed: {', '.join(Config.model_fields)}"
        )
    try:
        cfg = Config.model_validate(dict(tree))
    except ValidationError as err:
        raise format_validation_error(err, source, model_field_index()) from None
    _check_cross_fields(cfg, source)
    return cfg


def _check_cross_fields(cfg: Config, source: str | Path | None) -> None:
    where = f"{source}: " if source else ""
    if cfg.sampler.rois_per_batch % cfg.solver.ims_per_batch != 0:
        raise ConfigError(
            f"{where}sampler.rois_per_batch: bad value {cfg.sampler.rois_per_batch}: must divide "
            f"by solver.ims_per_batch ({cfg.solver.ims_per_batch}); pick a multiple of it"
        )
    if any(s >= cfg.train.max_iter for s in cfg.solver.steps) and cfg.solver.steps:
        pass  # a step beyond max_iter simply never fires; allowed (short runs of long schedules)
    if sorted(cfg.solver.steps) != list(cfg.solver.steps):
        raise ConfigError(
            f"{where}solver.steps: bad value {cfg.solver.steps}: must be increasing iterations"
        )


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Config:
    """Load YAML (or defaults), merge `extra` then `--set` overrides, and validate."""
    tree: dict[str, Any] = read_yaml(path) if path is not None else {}
    if extra:
        tree = deep_merge(tree, extra)
    source = str(path) if path is not None else None
    if overrides:
        tree = deep_merge(tree, parse_overrides(overrides))
        source = f"{source} (with --set)" if source else "--set"
    return build_config(tree, source)
