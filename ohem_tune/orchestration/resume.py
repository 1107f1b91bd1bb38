"""The resume contract: an experiment folder remembers what its trials are; a changed spec is
refused with what changed, and the same spec continues where it stopped.

Trial identity is hash(resolved config, seed excluded) + seed, so seeds may be added freely.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ohem_tune.errors import ConfigError
from ohem_tune.spec.expand import TrialSpec

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """What defines an experiment's trials (seeds aside): per-variant configs and the search."""

    spec_name: str
    spec_file: str
    profile: str | None
    variants: dict[str, dict[str, Any]]  # variant -> {"config_hash": ..., "config": flat dict}
    search: dict[str, Any]  # search + scheduler definitions (Optuna specs)

    @classmethod
    def build(
        cls,
        spec_name: str,
        spec_file: str,
        profile: str | None,
        trials: list[TrialSpec],
        search: dict[str, Any],
    ) -> Manifest:
        variants: dict[str, dict[str, Any]] = {}
        for trial in trials:
            flat = trial.config.flat()
            flat.pop("train.seed", None)
            variants.setdefault(trial.variant, {"config_hash": trial.config_hash, "config": flat})
        return cls(spec_name, spec_file, profile, variants, search)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, sort_keys=True, default=str)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def diff(old: Manifest, new: Manifest, limit: int = 6) -> list[str]:
    """Human-readable differences that change what the trials are (empty: same experiment)."""
    changes: list[str] = []
    if old.profile != new.profile:
        changes.append(f"profile {old.profile!r} -> {new.profile!r}")
    for name in new.variants:
        if name not in old.variants:
            changes.append(f"variant '{name}' added")
    for name in old.variants:
        if name not in new.variants:
            changes.append(f"variant '{name}' removed")
    for name, entry in new.variants.items():
        before = old.variants.get(name)
        if before is None or before["config_hash"] == entry["config_hash"]:
            continue
        a, b = before["config"], entry["config"]
        fields = [
            f"{k} {_show(a.get(k))} -> {_show(b.get(k))}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
        changes.append(
            f"variant '{name}': " + "; ".join(fields[:4]) + (" ..." if len(fields) > 4 else "")
        )
    if old.search != new.search:
        keys = sorted(
            k for k in set(old.search) | set(new.search) if old.search.get(k) != new.search.get(k)
        )
        changes.append("search/scheduler changed: " + ", ".join(keys))
    if len(changes) > limit:
        changes = [*changes[:limit], f"... and {len(changes) - limit} more"]
    return changes


def _show(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value, default=str)


def check_or_write(exp_dir: Path, manifest: Manifest, resume: bool, experiment_hint: str) -> bool:
    """Compare with the experiment folder's manifest; returns True when continuing one.

    A changed spec raises ConfigError naming the changes; `resume=True` with nothing to resume
    raises too. A fresh experiment writes its manifest.
    """
    path = exp_dir / MANIFEST
    if path.is_file():
        old = Manifest.read(path)
        changes = diff(old, manifest)
        if changes:
            raise ConfigError(
                f"{manifest.spec_file}: refusing to resume experiment {exp_dir} because the spec "
                f"changed since it started: {' | '.join(changes)}. Undo the change, or start a new "
                f"experiment with --experiment {experiment_hint}-v2"
            )
        return True
    if resume:
        raise ConfigError(
            f"{manifest.spec_file}: --resume: nothing to resume in {exp_dir}; "
            "run without --resume to start the experiment (or pass the same --storage-path)"
        )
    exp_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(manifest.to_json())
    os.replace(tmp, path)
    return False
