"""Validated configuration tree: YAML -> Config (pydantic) -> builders."""

from ohem_tune.config.dataset import DatasetConfig, InputConfig, ProposalConfig, SyntheticConfig
from ohem_tune.config.errors import ConfigError
from ohem_tune.config.model import ModelConfig
from ohem_tune.config.root import (
    Config,
    build_config,
    deep_merge,
    flatten,
    load_config,
    parse_overrides,
    read_yaml,
)
from ohem_tune.config.sampler import SamplerConfig
from ohem_tune.config.solver import SolverConfig
from ohem_tune.config.test import TestConfig
from ohem_tune.config.train import TrainConfig

__all__ = [
    "Config",
    "ConfigError",
    "DatasetConfig",
    "InputConfig",
    "ModelConfig",
    "ProposalConfig",
    "SamplerConfig",
    "SolverConfig",
    "SyntheticConfig",
    "TestConfig",
    "TrainConfig",
    "build_config",
    "deep_merge",
    "flatten",
    "load_config",
    "parse_overrides",
    "read_yaml",
]
