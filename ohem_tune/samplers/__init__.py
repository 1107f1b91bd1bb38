"""RoI samplers behind one interface; importing this package registers the built-in ones."""

from ohem_tune.samplers import all_rois, heuristic, ohem, ohem_balanced  # noqa: F401
from ohem_tune.samplers.base import (
    REGISTRY,
    RankingPass,
    RoISampler,
    SampleResult,
    build_sampler,
    register,
)

__all__ = ["REGISTRY", "RankingPass", "RoISampler", "SampleResult", "build_sampler", "register"]
