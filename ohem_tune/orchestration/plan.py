"""A spec resolved for one invocation of `ohem-tune run` (no Ray, no MLflow calls, no torch).

`make_plan` loads and expands the spec, applies `--only` and `--resources`, and decides where the
experiment lives: its local folder (manifest, trial folders) and the storage Tune writes to.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from ohem_tune.config import Config
from ohem_tune.config.errors import suggest
from ohem_tune.errors import ConfigError, DataError
from ohem_tune.orchestration import tracking
from ohem_tune.spec import Spec, TrialSpec, load_spec
from ohem_tune.spec.schema import ResourcesSpec

DEFAULT_STORAGE = "ray_results"


@dataclass
class Plan:
    """A spec resolved for one invocation: trials, where they go, how they are tracked.

    `exp_dir` is a local folder (manifest, trials/); `storage` is the root Tune writes checkpoints
    and state under: the same folder's parent for a filesystem path, or a cloud URI as given.
    """

    spec: Spec
    spec_path: str
    profile: str | None
    trials: list[TrialSpec]
    experiment: str
    tracking_uri: str
    exp_dir: Path
    overrides: tuple[str, ...] = ()
    # Every trial of the spec (the experiment's manifest); `trials` may be a subset (--only).
    all_trials: list[TrialSpec] | None = None
    storage: str = ""  # absolute path, or a URI such as s3://bucket/prefix (never made local)

    @property
    def resources(self):
        return self.trials[0].resources

    @property
    def optuna(self) -> bool:
        return self.spec.search is not None and self.spec.search.uses_optuna

    @property
    def eval_period(self) -> int:
        """The longest train.eval_period among the trials: where ASHA can first decide."""
        return max(t.config.train.eval_period for t in self.trials)

    @property
    def num_trials(self) -> int:
        """Trials this plan runs in all (Optuna: num_samples, else variants x points x seeds)."""
        return self.spec.search.num_samples if self.optuna else len(self.trials)  # type: ignore[union-attr]

    @property
    def tune_storage(self) -> str:
        """Ray Tune's storage_path: `<storage>/<experiment>/<profile>/tune` (a URI stays a URI)."""
        if is_uri(self.storage):
            return "/".join([self.storage.rstrip("/"), *self.exp_dir.parts[-2:], "tune"])
        return str(self.exp_dir / "tune")


def is_uri(storage: str | Path) -> bool:
    """Whether a storage path names a remote filesystem (s3://, gs://, abfs://, ...), not a file."""
    raw = str(storage)
    scheme = urlsplit(raw).scheme
    # one letter is a Windows drive; 'name:tag' without '//' is a file name
    return len(scheme) > 1 and scheme != "file" and raw.lower().startswith(f"{scheme}://")


def resolve_storage(storage_path: str | Path | None) -> str:
    """The storage root: a remote URI untouched, else an absolute local path (file:// stripped)."""
    raw = str(storage_path) if storage_path is not None else DEFAULT_STORAGE
    if is_uri(raw):
        return raw
    if urlsplit(raw).scheme == "file":
        raw = urlsplit(raw).path
    return str(Path(raw).expanduser().resolve())


def make_plan(
    spec_path: str | Path,
    profile: str | None = None,
    seeds: int | None = None,
    overrides: Sequence[str] = (),
    tracking_uri: str | None = None,
    storage_path: str | Path | None = None,
    experiment: str | None = None,
    only: Sequence[str] = (),
    resources: Sequence[str] = (),
) -> Plan:
    """Load and expand the spec, resolve the tracking URI and the experiment folder (no Ray).

    `only` runs a subset of the spec's variants (the experiment still records all of them, so a
    later run of the whole spec continues it); `resources` overrides the per-trial resources
    (`cpu=1`, `gpu=0`) for this invocation. With a cloud URI as storage, the experiment's local
    folder (manifest, trial folders) is `./ray_results/<experiment>/<profile>` on each node.
    """
    spec = load_spec(spec_path)
    all_trials = spec.expand(profile=profile, seeds=seeds, overrides=overrides)
    trials = select_variants(all_trials, only, str(spec_path))
    if resources:
        override = parse_resources(resources, spec_path)
        trials = [replace(t, resources=t.resources.model_copy(update=override)) for t in trials]
    chosen = trials[0].profile
    name = experiment or spec.tracking.experiment or spec.name
    uri = tracking.resolve_tracking_uri(tracking_uri or spec.tracking.uri)
    storage = resolve_storage(storage_path)
    local_root = Path(resolve_storage(None) if is_uri(storage) else storage)
    exp_dir = local_root / name / (chosen or "default")
    return Plan(
        spec,
        str(spec_path),
        chosen,
        trials,
        name,
        uri,
        exp_dir,
        tuple(overrides),
        all_trials,
        storage,
    )


def select_variants(trials: list[TrialSpec], only: Sequence[str], where: str) -> list[TrialSpec]:
    """The trials of the named variants (all when `only` is empty); unknown names are an error."""
    if not only:
        return trials
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    known = list(dict.fromkeys(t.variant.split("@", 1)[0] for t in trials))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"{where}: --only: unknown variant '{unknown[0]}'{suggest(unknown[0], known)}; "
            f"the spec's variants: {', '.join(known)}"
        )
    return [t for t in trials if t.variant.split("@", 1)[0] in names]


def parse_resources(items: Sequence[str], where: str | Path) -> dict[str, float]:
    """['cpu=1', 'gpu=0'] (or 'cpu=1,gpu=0') -> validated per-trial resource overrides."""
    update: dict[str, float] = {}
    for item in (part for entry in items for part in entry.split(",") if part.strip()):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in ("cpu", "gpu"):
            raise ConfigError(
                f"{where}: --resources {item!r}: expected cpu=N or gpu=N, "
                "e.g. --resources cpu=1,gpu=0"
            )
        try:
            update[key] = float(raw)
        except ValueError:
            raise ConfigError(f"{where}: --resources {key}: {raw!r} is not a number") from None
    try:
        ResourcesSpec(**update)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{where}: --resources {field}: {err['msg']}") from None
    return update


def invocation_name(plan: Plan) -> str:
    """`<experiment>-<profile>-<UTC time>`: the parent run's name and Tune's run name."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{plan.experiment}-{plan.profile or 'default'}-{stamp}"


def absolute_paths(tree: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Make the config's local paths absolute: trials run in other working directories. Taken
    lexically (symlinks kept): dataset.root's proposal files are relative to the path given."""
    ds = tree.get("dataset", {})

    def fix(node: dict[str, Any], key: str) -> None:
        value = node.get(key)
        if value and not Path(value).is_absolute() and "://" not in str(value):
            node[key] = os.path.abspath(cwd / value)

    fix(ds, "root")
    fix(ds.get("synthetic", {}), "cache_dir")
    fix(ds.get("proposals", {}), "cache_dir")
    if not ds.get("root"):
        fix(ds.get("proposals", {}), "train_file")
        fix(ds.get("proposals", {}), "test_file")
    fix(tree.get("model", {}), "weights")
    return tree


def check_local_paths(trials: list[TrialSpec], spec_path: str) -> None:
    """On this machine, datasets and weights a trial names must exist (checked before Ray)."""
    for trial in trials:
        cfg = trial.config
        needed = [("dataset.root", cfg.dataset.root), ("model.weights", cfg.model.weights)]
        for field_name, path in needed:
            if path is not None and not Path(path).expanduser().exists():
                raise DataError(
                    f"{spec_path}: variant '{trial.variant}' (profile '{trial.profile}'): "
                    f"{field_name}: {path} does not exist; put the files there, point "
                    f"--set {field_name}=... at them, or use a profile that needs no data "
                    "(the default `local` profile uses the built-in synthetic set)"
                )


def trial_table_rows(trials: list[TrialSpec]) -> list[dict[str, Any]]:
    """Key hyperparameters of each trial, for --dry-run."""
    rows = []
    for t in trials:
        c: Config = t.config
        rows.append(
            {
                "variant": t.variant,
                "seed": t.seed,
                "sampler": c.sampler.name,
                "backbone": c.model.backbone,
                "N": c.solver.ims_per_batch,
                "B": c.sampler.rois_per_batch,
                "LR": c.solver.lr,
                "bg_lo": c.sampler.bg_lo,
                "iters": c.train.max_iter,
                "scales": "/".join(str(s) for s in c.input.scales),
                "test": "/".join(str(s) for s in c.test.scales)
                + ("+B" if c.test.iterative_bbox else ""),
                "trial_id": t.trial_id,
            }
        )
    return rows
