"""Search-space specs: ablation variants, profiles, seeds and searches -> validated trials.

Pure pydantic + yaml (no torch, no ray): the report imports it too.
"""

from ohem_tune.spec.expand import TrialSpec, config_identity, dotted_tree, trial_id_for
from ohem_tune.spec.load import build_spec, load_spec
from ohem_tune.spec.schema import (
    Profile,
    ReportSpec,
    ResourcesSpec,
    SchedulerSpec,
    Spec,
    TrackingSpec,
    Variant,
)
from ohem_tune.spec.search import SearchParam, SearchSpec

__all__ = [
    "Profile",
    "ReportSpec",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearchParam",
    "SearchSpec",
    "Spec",
    "TrackingSpec",
    "TrialSpec",
    "Variant",
    "build_spec",
    "config_identity",
    "dotted_tree",
    "load_spec",
    "trial_id_for",
]
