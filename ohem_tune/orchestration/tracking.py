"""The MLflow layer: tracking URIs, the parent run per invocation, and one run per trial.

Trials log from inside their own process with an explicit tracking URI (never the process-global
fluent state), which keeps logging working on remote nodes (ray-project/ray#36257).
"""

from __future__ import annotations

import math
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ohem_tune import tracking_keys as tk
from ohem_tune.errors import TrackingError
from ohem_tune.tracking_uri import resolve_tracking_uri  # noqa: F401  (re-exported)

T = TypeVar("T")

STATUS_FINISHED, STATUS_FAILED, STATUS_PRUNED = "FINISHED", "FAILED", "PRUNED"
STATUS_INTERRUPTED = "INTERRUPTED"  # stopped by the driver (Ctrl-C); continued on re-run
_MLFLOW_STATUS = {
    STATUS_FINISHED: "FINISHED",
    STATUS_FAILED: "FAILED",
    STATUS_PRUNED: "KILLED",
    STATUS_INTERRUPTED: "KILLED",
}
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000


def is_local_store(uri: str) -> bool:
    """True for stores that live on the driver's disk (sqlite, file): single-node only."""
    return uri.startswith(("sqlite:", "file:"))


def artifact_location(uri: str) -> str | None:
    """For a SQLite store, artifacts go beside the database (mlruns/); servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").resolve().as_uri()
    return None


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail early, with the fix, when the tracking store cannot be used from this process."""
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise TrackingError(
                f"tracking URI {uri}: folder {folder} does not exist; create it or pass "
                "--tracking-uri with an existing folder"
            )
        return
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                if resp.status == 200:
                    return
                raise TrackingError(f"tracking URI {uri}: {url} answered HTTP {resp.status}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"tracking URI {uri}: cannot reach the MLflow server ({reason}); start it with "
                "`mlflow server --backend-store-uri sqlite:///mlflow.db --host 0.0.0.0 --port 5000`"
                " or fix --tracking-uri"
            ) from None


def with_retries(fn: Callable[[], T], attempts: int = 8, delay_s: float = 0.25) -> T:
    """Retry a store call on transient errors (SQLite 'database is locked', HTTP hiccups)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # MlflowException wraps sqlalchemy and HTTP errors alike
            text = str(exc).lower()
            transient = any(
                s in text for s in ("locked", "busy", "timed out", "connection", "503", "502")
            )
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(delay_s * (2**attempt))
    raise AssertionError("unreachable")


def client(uri: str) -> Any:
    """An MlflowClient bound to `uri` (imported here: mlflow is heavy)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment `name`, created (artifacts beside a SQLite store) if missing."""
    mlflow_client = client(uri)

    def get_or_create() -> str:
        found = mlflow_client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"MLflow experiment '{name}' at {uri} is deleted; restore it "
                    "(`mlflow experiments restore`) or pick another name with --experiment"
                )
            return str(found.experiment_id)
        return str(mlflow_client.create_experiment(name, artifact_location=artifact_location(uri)))

    try:
        return with_retries(get_or_create)
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"tracking URI {uri}: cannot open experiment '{name}': {exc}") from None


@dataclass(frozen=True)
class RunRecord:
    """What the driver needs to know of an existing trial run."""

    run_id: str
    trial_id: str
    status: str  # ohem_tune.status tag, else the MLflow status
    mlflow_status: str
    variant: str
    metrics: dict[str, float]
    run_name: str = ""


def trial_runs(uri: str, experiment_id: str) -> dict[str, list[RunRecord]]:
    """All trial runs of an experiment, grouped by trial id (paged: thousands of runs work)."""
    mlflow_client = client(uri)
    out: dict[str, list[RunRecord]] = {}
    token = None
    while True:
        page = with_retries(
            lambda page_token=token: mlflow_client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{tk.TAG_ROLE}` = 'trial'",
                max_results=1000,
                page_token=page_token,
            )
        )
        for run in page:
            tags = run.data.tags
            trial_id = tags.get(tk.TAG_TRIAL_ID)
            if not trial_id:
                continue
            out.setdefault(trial_id, []).append(
                RunRecord(
                    run_id=run.info.run_id,
                    trial_id=trial_id,
                    status=tags.get(tk.TAG_STATUS, run.info.status),
                    mlflow_status=run.info.status,
                    variant=tags.get(tk.TAG_VARIANT, ""),
                    metrics=dict(run.data.metrics),
                    run_name=run.info.run_name or "",
                )
            )
        token = page.token
        if not token:
            return out


def finished_trial_ids(runs: Mapping[str, list[RunRecord]]) -> set[str]:
    """Trial ids that already have a FINISHED run: these are never run again."""
    return {tid for tid, recs in runs.items() if any(r.mlflow_status == "FINISHED" for r in recs)}


def start_parent_run(uri: str, experiment_id: str, name: str, tags: Mapping[str, str]) -> str:
    """The parent run grouping one invocation's trials; returns its id."""
    mlflow_client = client(uri)
    run = with_retries(
        lambda: mlflow_client.create_run(
            experiment_id, run_name=name, tags={**tags, tk.TAG_ROLE: "parent"}
        )
    )
    return str(run.info.run_id)


def end_run(uri: str, run_id: str, status: str, tags: Mapping[str, str] | None = None) -> None:
    """Set final tags and the MLflow status (PRUNED is stored as KILLED + the status tag)."""
    mlflow_client = client(uri)
    if tags:
        from mlflow.entities import RunTag

        with_retries(
            lambda: mlflow_client.log_batch(
                run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()]
            )
        )
    with_retries(lambda: mlflow_client.set_terminated(run_id, _MLFLOW_STATUS[status]))


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Numeric, finite entries only (MLflow rejects NaN on some stores; strings are not metrics)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class TrialRun:
    """One trial's MLflow run, opened inside the trial; reused when the trial resumes or retries."""

    def __init__(self, uri: str, run_id: str, resumed: bool, logged_params: set[str]) -> None:
        self.uri = uri
        self.run_id = run_id
        self.resumed = resumed
        self._client = client(uri)
        self._logged_params = logged_params
        self._last_step: dict[str, int] = {}

    @classmethod
    def open(
        cls,
        uri: str,
        experiment_id: str,
        trial_id: str,
        run_name: str,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
    ) -> TrialRun:
        """Reuse the trial's unfinished run (RUNNING, FAILED or KILLED), else create one."""
        mlflow_client = client(uri)
        existing = _search_trial_runs(
            mlflow_client,
            experiment_id,
            trial_id,
            max_results=50,
            order_by=["attributes.start_time DESC"],
        )
        reusable = [r for r in existing if r.info.status != "FINISHED"]
        all_tags = {**tags, tk.TAG_STATUS: "RUNNING"}
        if reusable:
            run = reusable[0]
            with_retries(lambda: mlflow_client.update_run(run.info.run_id, status="RUNNING"))
            trial = cls(uri, run.info.run_id, True, set(run.data.params))
            trial.set_tags(all_tags)
            trial._last_step = trial._history_tail(tk.LOSS)
            return trial
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = with_retries(
            lambda: mlflow_client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        )
        return cls(uri, run.info.run_id, False, set())

    @staticmethod
    def finished_metrics(uri: str, experiment_id: str, trial_id: str) -> dict[str, float] | None:
        """The final metrics of the trial's FINISHED run, if it has one (then it is not re-run)."""
        mlflow_client = client(uri)
        runs = _search_trial_runs(
            mlflow_client, experiment_id, trial_id, "and attributes.status = 'FINISHED'", 1
        )
        return dict(runs[0].data.metrics) if runs else None

    def _history_tail(self, key: str) -> dict[str, int]:
        history = with_retries(lambda: self._client.get_metric_history(self.run_id, key))
        return {key: max(m.step for m in history)} if history else {}

    def already_logged(self, key: str, step: int) -> bool:
        """True for steps an earlier attempt logged (a resumed trial re-runs a few iterations)."""
        return step <= self._last_step.get(key, -1)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        with_retries(lambda: self._client.log_batch(self.run_id, tags=items))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flat params (lists as strings); keys logged by an earlier attempt are skipped."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in self._logged_params]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            chunk = items[i : i + _MAX_PARAMS_PER_BATCH]
            with_retries(lambda chunk=chunk: self._client.log_batch(self.run_id, params=chunk))
        self._logged_params.update(p.key for p in items)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Numeric, finite metrics at `step` (one batch call)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in finite_metrics(metrics).items()]
        for i in range(0, len(items), _MAX_METRICS_PER_BATCH):
            chunk = items[i : i + _MAX_METRICS_PER_BATCH]
            with_retries(lambda chunk=chunk: self._client.log_batch(self.run_id, metrics=chunk))

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path.is_file():
                with_retries(lambda path=path: self._client.log_artifact(self.run_id, str(path)))

    def end(self, status: str, error: str | None = None) -> None:
        """FINISHED, FAILED (with the error tag) or PRUNED (MLflow KILLED)."""
        tags = {tk.TAG_STATUS: status}
        if error:
            tags[tk.TAG_ERROR] = error
        end_run(self.uri, self.run_id, status, tags)


def host_name() -> str:
    """This machine's host name (a tag on every trial)."""
    return socket.gethostname()


def _search_trial_runs(
    mlflow_client: Any,
    experiment_id: str,
    trial_id: str,
    extra_filter: str = "",
    max_results: int = 50,
    order_by: list[str] | None = None,
) -> list[Any]:
    """The trial runs (not parents) of `trial_id` in the experiment, optionally filtered more."""
    filter_string = (
        f"tags.`{tk.TAG_TRIAL_ID}` = '{trial_id}' and tags.`{tk.TAG_ROLE}` = 'trial' {extra_filter}"
    ).strip()
    return with_retries(
        lambda: mlflow_client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=max_results, order_by=order_by
        )
    )
